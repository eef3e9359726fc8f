"""Apply a parsed fleet file: create what is missing, update what differs, in one transaction.

Nodes present in the database but absent from the file are left alone (a fleet file may
describe part of the fleet). Hardware of agent-managed nodes is what the agent detected, so
a file that changes their chip or count is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from suanli.domain.actor import Actor
from suanli.domain.fleet import ParsedFleet
from suanli.domain.lifecycle import NodeState
from suanli.domain.specs import DataCenterPatch, NodeSpec
from suanli.errors import ConflictError
from suanli.services import audit, compliance, datacenters, holdings, nodes
from suanli.store.tables import DataCenterRow, NodeRow

FLEET_REASON = "fleet file"


@dataclass
class ApplyResult:
    created_data_centers: list[str] = field(default_factory=list)
    updated_data_centers: list[str] = field(default_factory=list)
    unchanged_data_centers: int = 0
    created_nodes: int = 0
    updated_nodes: list[str] = field(default_factory=list)
    unchanged_nodes: int = 0


def apply(
    session: Session, actor: Actor, fleet: ParsedFleet, override_reason: str | None = None
) -> ApplyResult:
    """Apply ``fleet``; refused as a whole if it breaks a domestic-share rule."""
    with compliance.fleet_guard(session, actor, "fleet file", None, override_reason):
        return _apply(session, actor, fleet)


def _apply(session: Session, actor: Actor, fleet: ParsedFleet) -> ApplyResult:
    result = ApplyResult()
    dc_rows = {r.name: r for r in datacenters.list_all(session)}
    for dc_spec in fleet.data_centers:
        existing = dc_rows.get(dc_spec.name)
        if existing is None:
            dc_rows[dc_spec.name] = datacenters.create(session, actor, dc_spec)
            result.created_data_centers.append(dc_spec.name)
            continue
        patch = DataCenterPatch(**dc_spec.model_dump(exclude={"name"}))
        if datacenters.apply_patch(session, actor, existing, patch):
            result.updated_data_centers.append(dc_spec.name)
        else:
            result.unchanged_data_centers += 1

    names = [n.name for n in fleet.nodes]
    existing_nodes: dict[str, NodeRow] = {}
    for chunk in range(0, len(names), 500):
        stmt = (
            select(NodeRow)
            .where(NodeRow.name.in_(names[chunk : chunk + 500]))
            .options(selectinload(NodeRow.accelerators), selectinload(NodeRow.data_center))
        )
        existing_nodes.update({r.name: r for r in session.scalars(stmt)})

    for spec in fleet.nodes:
        dc = dc_rows[spec.data_center]
        row = existing_nodes.get(spec.name)
        if row is None:
            nodes.add_row(session, actor, spec, dc, FLEET_REASON)
            result.created_nodes += 1
        elif _update_node(session, actor, row, spec, dc):
            result.updated_nodes.append(spec.name)
        else:
            result.unchanged_nodes += 1
    session.flush()
    return result


def _running_on(session: Session, row: NodeRow) -> list[str]:
    return [w.name for w in holdings.workloads_on(session, row.id)]


def _update_node(
    session: Session, actor: Actor, row: NodeRow, spec: NodeSpec, dc: DataCenterRow
) -> bool:
    before = nodes.snapshot(row)
    hardware_changed = row.chip != spec.chip or row.accelerator_count != spec.count
    if hardware_changed and row.agent_managed:
        raise ConflictError(
            f"node {spec.name!r} is managed by its agent, which detected {row.accelerator_count} x "
            f"{row.chip}; the fleet file says {spec.count} x {spec.chip}"
        )
    moved = row.data_center_id != dc.id
    if (hardware_changed or moved) and (running := _running_on(session, row)):
        what = f"move to {dc.name}" if moved else "change its hardware"
        raise ConflictError(
            f"node {spec.name!r} runs workloads {running}; finish them before you {what}"
        )
    if hardware_changed:
        row.chip = spec.chip
        row.accelerator_count = spec.count
        row.accelerators.clear()
        session.flush()  # delete the old rows before their (node, index) is reused
        row.accelerators.extend(nodes.accelerator_rows(spec.chip, spec.count, spec.memory_gb))
    row.data_center = dc
    row.island = spec.island
    if spec.cpu_cores is not None:
        row.cpu_cores = spec.cpu_cores
    if spec.memory_mb is not None:
        row.memory_mb = spec.memory_mb
    # The file's state applies on creation; later only when the file names it explicitly,
    # so re-applying a file never undoes lifecycle moves made since.
    if "state" in spec.model_fields_set and NodeState(row.state) is not spec.state:
        nodes.set_state(session, actor, row, spec.state, FLEET_REASON)
    after = nodes.snapshot(row)
    if after == before:
        return False
    audit.record(
        session, actor, "update", "node", spec.name, before=before, after=after, reason=FLEET_REASON
    )
    return True
