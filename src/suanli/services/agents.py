"""Node agents: registration, heartbeats, and marking silent nodes down."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from suanli.catalog.chips import load_catalog
from suanli.domain.actor import SYSTEM, Actor
from suanli.domain.agent import DeviceReport, Heartbeat, Registration
from suanli.domain.lifecycle import NodeState, return_from_down
from suanli.errors import ConflictError, ValidationError
from suanli.services import audit, compliance, datacenters, nodes
from suanli.store.tables import AcceleratorRow, DataCenterRow, NodeEventRow, NodeRow
from suanli.store.types import utcnow


def _chip_of(devices: list[DeviceReport]) -> str | None:
    catalog = load_catalog()
    chips = {catalog.get(d.name, field=f"devices[{i}].name").model for i, d in enumerate(devices)}
    if len(chips) > 1:
        raise ValidationError(f"one node holds one chip model; found {sorted(chips)}", "devices")
    return chips.pop() if chips else None


def _sync_devices(row: NodeRow, chip: str | None, devices: list[DeviceReport]) -> None:
    by_index = {a.index: a for a in row.accelerators}
    seen: set[int] = set()
    for d in devices:
        if d.index in seen:
            raise ValidationError(f"device index {d.index} reported twice", "devices")
        seen.add(d.index)
        acc = by_index.get(d.index)
        if acc is None:
            acc = AcceleratorRow(index=d.index, chip=chip or d.name)
            row.accelerators.append(acc)
        acc.memory_mb = d.memory_mb
        acc.uuid = d.uuid
        acc.health = d.health
        acc.temperature_c = d.temperature_c
        acc.utilization_pct = d.utilization_pct
        acc.ecc_errors = d.ecc_errors
    for acc in list(row.accelerators):
        if acc.index not in seen:
            row.accelerators.remove(acc)


def _update_health(row: NodeRow, devices: list[DeviceReport]) -> None:
    """A heartbeat updates what it reports; a registered device it no longer reports is
    marked critical (it fell off the bus), never silently removed."""
    reported = {d.index: d for d in devices}
    if len(reported) != len(devices):
        raise ValidationError("a device index is reported twice", "devices")
    for acc in row.accelerators:
        d = reported.get(acc.index)
        if d is None:
            acc.health = "critical"
            continue
        acc.health = d.health
        acc.temperature_c = d.temperature_c
        acc.utilization_pct = d.utilization_pct
        acc.ecc_errors = d.ecc_errors


def register(session: Session, actor: Actor, reg: Registration) -> NodeRow:
    chip = _chip_of(reg.devices)
    dc = datacenters.get(session, reg.data_center)
    subject = f"registration of node {reg.name} in {dc.name}"
    with compliance.fleet_guard(session, actor, subject, {dc.name}):
        row, before = _upsert(session, actor, reg, chip, dc)
    if NodeState(row.state) is NodeState.DOWN:
        _revive(session, actor, row)
    after = nodes.snapshot(row)
    if after != before:
        audit.record(session, actor, "register", "node", row.name, before=before, after=after)
    return row


def _upsert(
    session: Session, actor: Actor, reg: Registration, chip: str | None, dc: DataCenterRow
) -> tuple[NodeRow, dict[str, Any] | None]:
    """Create or update the node as the agent describes it; returns it and its old snapshot."""
    row = session.scalar(select(NodeRow).where(NodeRow.name == reg.name))
    before: dict[str, Any] | None = None
    if row is None:
        row = NodeRow(
            name=reg.name,
            data_center=dc,
            state=NodeState.REGISTERED.value,
            state_reason="registered by its agent",
            accelerators=[],
        )
        session.add(row)
        session.add(
            NodeEventRow(
                node=row,
                from_state=None,
                to_state=row.state,
                reason=row.state_reason,
                actor=actor.name,
            )
        )
    else:
        if row.data_center_id != dc.id:
            raise ConflictError(
                f"node {reg.name!r} belongs to data center {row.data_center.name!r}, "
                f"not {reg.data_center!r}"
            )
        before = nodes.snapshot(row)
    row.chip = chip
    row.accelerator_count = len(reg.devices)
    row.island = reg.island or row.island
    row.hostname = reg.hostname
    row.cpu_cores = reg.cpu_cores
    row.memory_mb = reg.memory_mb
    row.detector = reg.detector
    row.driver_version = reg.driver_version
    row.agent_managed = True
    row.last_heartbeat_at = utcnow()
    _sync_devices(row, chip, reg.devices)
    session.flush()
    return row, before


def heartbeat(session: Session, actor: Actor, beat: Heartbeat) -> NodeRow:
    row = nodes.get(session, beat.node)
    if not row.agent_managed:
        raise ConflictError(f"node {beat.node!r} was not registered by an agent")
    known = {a.index for a in row.accelerators}
    unknown = [d.index for d in beat.devices if d.index not in known]
    if unknown:
        raise ValidationError(f"devices {unknown} were not registered; register again", "devices")
    if beat.devices:
        _update_health(row, beat.devices)
    row.last_heartbeat_at = utcnow()
    if NodeState(row.state) is NodeState.DOWN:
        _revive(session, actor, row)
    return row


def _revive(session: Session, actor: Actor, row: NodeRow) -> None:
    target = return_from_down(NodeState(row.previous_state) if row.previous_state else None)
    nodes.set_state(session, actor, row, target, "heartbeat returned")


def mark_silent_down(session: Session, timeout_s: float, now: datetime | None = None) -> list[str]:
    """Set ``down`` on agent-managed nodes silent for longer than ``timeout_s``.

    The conditional UPDATE makes this safe when several API processes run the check at once:
    only the one whose UPDATE changed the row writes the event and audit entry.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=timeout_s)
    stale = session.execute(
        select(NodeRow.id, NodeRow.name, NodeRow.state).where(
            NodeRow.agent_managed.is_(True),
            NodeRow.state != NodeState.DOWN.value,
            NodeRow.last_heartbeat_at < cutoff,
        )
    ).all()
    downed: list[str] = []
    for node_id, name, state in stale:
        reason = f"no heartbeat for more than {timeout_s:g} s"
        changed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(NodeRow)
            .where(NodeRow.id == node_id, NodeRow.state == state)
            .values(
                state=NodeState.DOWN.value,
                previous_state=state,
                state_reason=reason,
                state_changed_at=now,
            )
        )
        if changed.rowcount != 1:
            continue
        session.add(
            NodeEventRow(
                node_id=node_id,
                from_state=state,
                to_state=NodeState.DOWN.value,
                reason=reason,
                actor=SYSTEM.name,
            )
        )
        audit.record(
            session,
            SYSTEM,
            "set_state",
            "node",
            name,
            before={"state": state},
            after={"state": NodeState.DOWN.value, "reason": reason},
            reason=reason,
        )
        downed.append(name)
    return downed
