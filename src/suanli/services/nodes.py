"""Nodes, their accelerators, and lifecycle changes (each with a reason and an event)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from suanli.catalog.chips import load_catalog
from suanli.domain.actor import Actor
from suanli.domain.lifecycle import NodeState, check_transition
from suanli.domain.specs import NodePatch, NodeSpec
from suanli.errors import ConflictError, NotFoundError
from suanli.services import audit, compliance, datacenters, holdings
from suanli.store.tables import AcceleratorRow, DataCenterRow, NodeEventRow, NodeRow
from suanli.store.types import utcnow


def snapshot(row: NodeRow, data_center: str | None = None) -> dict[str, Any]:
    return {
        "name": row.name,
        "data_center": data_center if data_center is not None else row.data_center.name,
        "chip": row.chip,
        "count": row.accelerator_count,
        "island": row.island,
        "cpu_cores": row.cpu_cores,
        "memory_mb": row.memory_mb,
        "state": row.state,
    }


def get(session: Session, name: str) -> NodeRow:
    row = session.scalar(
        select(NodeRow)
        .where(NodeRow.name == name)
        .options(selectinload(NodeRow.accelerators), selectinload(NodeRow.data_center))
    )
    if row is None:
        raise NotFoundError("node", name)
    return row


def list_page(
    session: Session,
    data_center: str | None = None,
    state: NodeState | None = None,
    chip: str | None = None,
    after_id: int = 0,
    limit: int = 1000,
) -> list[tuple[NodeRow, str]]:
    """A page of nodes (by id) with their data center's name; no accelerator rows."""
    stmt = (
        select(NodeRow, DataCenterRow.name)
        .join(DataCenterRow, NodeRow.data_center_id == DataCenterRow.id)
        .where(NodeRow.id > after_id)
        .order_by(NodeRow.id)
        .limit(limit)
    )
    if data_center:
        stmt = stmt.where(DataCenterRow.name == data_center)
    if state:
        stmt = stmt.where(NodeRow.state == state.value)
    if chip:
        stmt = stmt.where(NodeRow.chip == load_catalog().get(chip, field="chip").model)
    return [(n, dc) for n, dc in session.execute(stmt)]


def accelerator_rows(chip: str | None, count: int, memory_gb: int | None) -> list[AcceleratorRow]:
    if chip is None:
        return []
    mem_gb = memory_gb if memory_gb is not None else load_catalog().get(chip).memory_gb
    memory_mb = int(mem_gb * 1024) if mem_gb is not None else None
    return [AcceleratorRow(index=i, chip=chip, memory_mb=memory_mb) for i in range(count)]


def create(
    session: Session,
    actor: Actor,
    spec: NodeSpec,
    override_reason: str | None = None,
) -> NodeRow:
    dc = datacenters.get(session, spec.data_center)
    if session.scalar(select(NodeRow.id).where(NodeRow.name == spec.name)) is not None:
        raise ConflictError(f"node {spec.name!r} already exists")
    subject = f"node {spec.name} in {dc.name}"
    with compliance.fleet_guard(session, actor, subject, {dc.name}, override_reason):
        row = add_row(session, actor, spec, dc, "created")
    return row


def add_row(
    session: Session, actor: Actor, spec: NodeSpec, dc: DataCenterRow, reason: str
) -> NodeRow:
    """Add the node, its accelerators, its first event and the audit entry (no checks: the
    caller has checked the name and runs the compliance guard)."""
    row = NodeRow(
        name=spec.name,
        data_center=dc,
        chip=spec.chip,
        accelerator_count=spec.count,
        island=spec.island,
        cpu_cores=spec.cpu_cores,
        memory_mb=spec.memory_mb,
        state=spec.state.value,
        state_reason=reason,
        accelerators=accelerator_rows(spec.chip, spec.count, spec.memory_gb),
    )
    session.add(row)
    session.add(
        NodeEventRow(node=row, from_state=None, to_state=row.state, reason=reason, actor=actor.name)
    )
    audit.record(
        session, actor, "create", "node", spec.name, after=snapshot(row, dc.name), reason=reason
    )
    return row


def patch(session: Session, actor: Actor, name: str, change: NodePatch) -> NodeRow:
    row = get(session, name)
    before = snapshot(row)
    for key, value in change.model_dump(exclude_unset=True).items():
        if value is not None:
            setattr(row, key, value)
    after = snapshot(row)
    if after != before:
        session.flush()
        audit.record(session, actor, "update", "node", name, before=before, after=after)
    return row


def set_state(session: Session, actor: Actor, row: NodeRow, target: NodeState, reason: str) -> None:
    """Move ``row`` to ``target`` if the lifecycle allows it; record event and audit."""
    current = NodeState(row.state)
    if current is target:
        return
    previous = NodeState(row.previous_state) if row.previous_state else None
    check_transition(row.name, current, target, previous)
    before = {"state": row.state, "reason": row.state_reason}
    row.previous_state = current.value
    row.state = target.value
    row.state_reason = reason
    row.state_changed_at = utcnow()
    session.add(
        NodeEventRow(
            node_id=row.id,
            from_state=current.value,
            to_state=target.value,
            reason=reason,
            actor=actor.name,
        )
    )
    audit.record(
        session,
        actor,
        "set_state",
        "node",
        row.name,
        before=before,
        after={"state": target.value, "reason": reason},
        reason=reason,
    )


def delete(session: Session, actor: Actor, name: str, override_reason: str | None = None) -> None:
    row = get(session, name)
    ran = len(holdings.workloads_on(session, row.id, running=False))
    if ran:
        raise ConflictError(
            f"node {name!r} has {ran} workloads in its history, which billing and lineage "
            "refer to; set it down or quarantined instead of deleting it"
        )
    before = snapshot(row)
    dc = row.data_center.name
    with compliance.fleet_guard(session, actor, f"removal of node {name}", {dc}, override_reason):
        session.delete(row)
    audit.record(session, actor, "delete", "node", name, before=before)


def events(session: Session, name: str, limit: int = 100) -> Sequence[NodeEventRow]:
    row = get(session, name)
    stmt = (
        select(NodeEventRow)
        .where(NodeEventRow.node_id == row.id)
        .order_by(NodeEventRow.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))
