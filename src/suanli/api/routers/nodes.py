"""/v1/nodes: nodes, their accelerators and lifecycle."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from suanli.api.deps import Admin, Cursor, DbSession, OverrideReason
from suanli.api.wire import NodeEventOut, NodeOut, NodePage
from suanli.domain.lifecycle import NodeState
from suanli.domain.specs import NodePatch, NodeSpec, StateChange
from suanli.services import nodes

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])
MAX_PAGE = 10_000


@router.get("")
def list_nodes(
    session: DbSession,
    _admin: Admin,
    data_center: str | None = None,
    state: NodeState | None = None,
    chip: str | None = None,
    after: Cursor = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
) -> NodePage:
    rows = nodes.list_page(session, data_center, state, chip, after, limit)
    return NodePage(
        nodes=[NodeOut.of(row, dc) for row, dc in rows],
        next_after=rows[-1][0].id if len(rows) == limit else None,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create_node(
    spec: NodeSpec, session: DbSession, admin: Admin, override_reason: OverrideReason = None
) -> NodeOut:
    row = nodes.create(session, admin, spec, override_reason)
    session.commit()
    return NodeOut.of(row, spec.data_center, with_devices=True)


@router.get("/{name}")
def get_node(name: str, session: DbSession, _admin: Admin) -> NodeOut:
    row = nodes.get(session, name)
    return NodeOut.of(row, row.data_center.name, with_devices=True)


@router.patch("/{name}")
def update_node(name: str, patch: NodePatch, session: DbSession, admin: Admin) -> NodeOut:
    row = nodes.patch(session, admin, name, patch)
    session.commit()
    return NodeOut.of(row, row.data_center.name, with_devices=True)


@router.post("/{name}/state")
def change_state(name: str, change: StateChange, session: DbSession, admin: Admin) -> NodeOut:
    row = nodes.get(session, name)
    nodes.set_state(session, admin, row, change.state, change.reason)
    session.commit()
    return NodeOut.of(row, row.data_center.name, with_devices=True)


@router.get("/{name}/events")
def node_events(
    name: str,
    session: DbSession,
    _admin: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[NodeEventOut]:
    return [NodeEventOut.of(e) for e in nodes.events(session, name, limit)]


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_node(
    name: str, session: DbSession, admin: Admin, override_reason: OverrideReason = None
) -> None:
    nodes.delete(session, admin, name, override_reason)
    session.commit()
