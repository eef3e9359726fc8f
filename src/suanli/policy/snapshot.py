"""Plain records the policy functions read: a snapshot of the fleet and a workload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DataCenterView:
    name: str
    country: str
    owner_type: str
    costs: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # chip -> (micros/h, ccy)


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    data_center: str
    chip: str | None
    count: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """Accelerators a running workload holds."""

    tenant: str
    data_center: str
    chip: str
    count: int


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    data_centers: Mapping[str, DataCenterView]
    nodes: tuple[NodeView, ...] = ()
    allocations: tuple[Allocation, ...] = ()

    def nodes_in(self, data_center: str) -> list[NodeView]:
        return [n for n in self.nodes if n.data_center == data_center]


@dataclass(frozen=True, slots=True)
class TenantView:
    name: str
    country: str
    verified: bool


@dataclass(frozen=True, slots=True)
class Residency:
    """Countries the workload's data may be in; ``None`` = no constraint.

    An empty set means its inputs demand different countries: it may run nowhere.
    ``sources`` names the datasets/artifacts that impose the constraint.
    """

    countries: frozenset[str] | None = None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkloadView:
    tenant: TenantView
    name: str
    kind: str
    residency: Residency = Residency()


@dataclass(frozen=True, slots=True)
class PlacementView:
    data_center: str
    chip: str
    count: int
    node: str | None = None
