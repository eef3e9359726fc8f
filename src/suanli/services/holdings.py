"""What running workloads hold, per node: the one place that reads a workload's slots.

A workload placed by the scheduler (or on a named node since it records devices) keeps
its slots in ``WorkloadRow.placement``: ``{"slots": [{"node": name, "node_id": id,
"devices": [..]}], "parts": [[data center, accelerators], ..]}``. One placed before that
has no ``placement`` and holds ``accelerators`` of ``node_id`` by count. Every sum of
accelerators held per node or per data center goes through here, so that a gang over
several nodes counts on each of them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.store.tables import ReplicaRow, WorkloadRow

__all__ = [
    "NodeUse",
    "Slot",
    "held_by_node",
    "node_use",
    "parts_of",
    "placement_json",
    "slots_of",
    "workloads_on",
]

RUNNING = "running"


@dataclass(frozen=True, slots=True)
class Slot:
    """``count`` accelerators of node ``node_id``: the ``devices`` (indices) when known."""

    node_id: int
    count: int
    devices: tuple[int, ...] | None = None
    node: str | None = None


@dataclass
class NodeUse:
    """Devices of one node that are taken by index, and accelerators held by count only."""

    devices: set[int] = field(default_factory=set)
    counted: int = 0

    def free(self, total: int) -> list[int]:
        """Free device indices of a node of ``total``; a count holds the first free ones."""
        free = [i for i in range(total) if i not in self.devices]
        return free[self.counted :]


def placement_json(
    slots: Iterable[tuple[int, str, Iterable[int]]], parts: Iterable[tuple[str, int]]
) -> dict[str, Any]:
    """The ``placement`` column from (node id, node name, devices) and (data center, n)."""
    return {
        "slots": [
            {"node_id": nid, "node": name, "devices": sorted(int(d) for d in devices)}
            for nid, name, devices in slots
        ],
        "parts": [[dc, int(n)] for dc, n in parts],
    }


def _slots(node_id: int | None, accelerators: int, placement: Any) -> list[Slot]:
    if isinstance(placement, dict) and placement.get("slots"):
        return [
            Slot(int(s["node_id"]), len(s["devices"]), tuple(s["devices"]), s.get("node"))
            for s in placement["slots"]
        ]
    if node_id is None:
        return []
    return [Slot(node_id, accelerators)]


def slots_of(row: WorkloadRow) -> list[Slot]:
    """Where ``row`` holds accelerators (nothing when it was never placed)."""
    return _slots(row.node_id, row.accelerators, row.placement)


def parts_of(row: WorkloadRow, data_center: str) -> list[tuple[str, int]]:
    """Accelerators per data center; ``data_center``: the name of ``row.data_center_id``."""
    placement = row.placement
    if isinstance(placement, dict) and placement.get("parts"):
        return [(str(dc), int(n)) for dc, n in placement["parts"]]
    return [(data_center, row.accelerators)]


def _running(session: Session) -> list[tuple[int, int | None, int, Any]]:
    stmt = select(
        WorkloadRow.id, WorkloadRow.node_id, WorkloadRow.accelerators, WorkloadRow.placement
    ).where(WorkloadRow.state == RUNNING)
    return [(i, n, a, p) for i, n, a, p in session.execute(stmt)]


def held_by_node(session: Session, node_ids: Collection[int] | None = None) -> dict[int, int]:
    """Accelerators running workloads hold per node (nodes holding none are left out)."""
    out: dict[int, int] = {}
    for _id, node_id, count, placement in _running(session):
        for slot in _slots(node_id, count, placement):
            if node_ids is None or slot.node_id in node_ids:
                out[slot.node_id] = out.get(slot.node_id, 0) + slot.count
    return out


def node_use(
    session: Session, node_ids: Collection[int], *, replicas: bool = True
) -> dict[int, NodeUse]:
    """Per node of ``node_ids``: devices held by running workloads (and, with ``replicas``,
    by serving replicas), and what older workloads hold by count."""
    out = {i: NodeUse() for i in node_ids}
    for _id, node_id, count, placement in _running(session):
        for slot in _slots(node_id, count, placement):
            use = out.get(slot.node_id)
            if use is None:
                continue
            if slot.devices is None:
                use.counted += slot.count
            else:
                use.devices.update(slot.devices)
    if replicas and out:
        rows = session.execute(
            select(ReplicaRow.node_id, ReplicaRow.devices).where(ReplicaRow.node_id.in_(list(out)))
        )
        for node_id, devices in rows:
            if node_id is not None:
                out[node_id].devices.update(devices or [])
    return out


def workloads_on(session: Session, node_id: int, *, running: bool = True) -> list[WorkloadRow]:
    """Workloads on ``node_id`` (any of their slots): running ones, or every one ever."""
    stmt = select(WorkloadRow).order_by(WorkloadRow.id)
    if running:
        stmt = stmt.where(WorkloadRow.state == RUNNING)
    else:
        stmt = stmt.where(WorkloadRow.node_id.is_not(None))  # every placed one has a node
    return [
        row
        for row in session.scalars(stmt)
        if any(slot.node_id == node_id for slot in slots_of(row))
    ]
