"""What the placement scheduler reads: the workload record and the fleet as indexes.

A ``Workload`` asks for ``accelerators`` devices, or, with ``gpu_milli`` below 1000, a
share of one device (Alibaba's GPU-sharing convention: 1000 milli = a whole device).

``ClusterView`` holds the fleet for fast scans at 10,000+ nodes. Nodes are grouped into
*pools*: the ready nodes of one chip in one island of one data center (nodes without an
island form one pool per chip and data center). Per pool it keeps, as numpy arrays the
filters test in one vectorised step, a histogram of nodes by whole free devices, the most
whole free devices on one node, the total, the largest free share of any device and of any
partly used device. Per pool and free count it keeps the nodes themselves, in insertion
order, so best fit is a walk over a few buckets; per chip and free count, the pools that
have such a node (``fit_index``), so the tightest fit of a chip is a dictionary lookup.
``allocate`` and ``release`` keep all of it current; ``running`` holds what runs where
(``spot``: the preemptible part per pool), for backfilling and preemption.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from suanli.catalog.chips import ChipCatalog, load_catalog, normalize_name
from suanli.errors import ConflictError, NotFoundError, ValidationError
from suanli.policy.snapshot import TenantView

__all__ = [
    "WHOLE",
    "ChipConstraint",
    "ClusterView",
    "NodeView",
    "Placement",
    "Running",
    "Slot",
    "Workload",
    "cover",
]

WHOLE = 1000
Kind = Literal["training", "finetune", "inference", "rental"]
Topology = Literal["node", "island", "data_center", "any"]
Priority = Literal["high", "spot"]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
KINDS = ("training", "finetune", "inference", "rental")
TOPOLOGIES = ("node", "island", "data_center", "any")


@dataclass(frozen=True, slots=True)
class ChipConstraint:
    """Which chips a workload accepts; every part given must hold, none given = any chip.

    ``models``: any of these chip models (names or aliases); ``stacks``: any chip on one of
    these software stacks (CUDA, CANN ...); ``min_memory_gb``: at least this much memory."""

    models: frozenset[str] = frozenset()
    stacks: frozenset[str] = frozenset()
    min_memory_gb: float | None = None

    def refusal(self, chip: str, stack: str | None, memory_gb: float | None) -> str | None:
        """Why ``chip`` is not acceptable, or ``None`` when it is."""
        if self.models and normalize_name(chip) not in {normalize_name(m) for m in self.models}:
            return f"{chip} is not one of {', '.join(sorted(self.models))}"
        if self.stacks and stack not in self.stacks:
            return f"{chip} runs {stack or 'an unknown stack'}, not {'/'.join(sorted(self.stacks))}"
        if self.min_memory_gb is not None and (memory_gb is None or memory_gb < self.min_memory_gb):
            have = "unknown memory" if memory_gb is None else f"{memory_gb:g} GB"
            return f"{chip} has {have}, below {self.min_memory_gb:g} GB"
        return None

    def describe(self) -> str:
        parts = []
        if self.models:
            parts.append("one of " + ", ".join(sorted(self.models)))
        if self.stacks:
            parts.append("on " + "/".join(sorted(self.stacks)))
        if self.min_memory_gb is not None:
            parts.append(f">= {self.min_memory_gb:g} GB")
        return "; ".join(parts) or "any chip"


ANY_CHIP = ChipConstraint()


@dataclass(frozen=True, slots=True)
class Workload:
    """A request for accelerators. ``gang``: all ``accelerators`` at once within
    ``topology`` or none; otherwise each device is an independent replica, placed wherever
    it fits. ``spot`` work may be preempted by ``high``. ``residency``: countries it may
    run in (``None``: any), the datasets that impose it in ``residency_sources``.
    ``model_id`` and ``precision`` feed the perf model and the memory fit; ``tokens`` (work
    to do) with ``deadline`` lets the cost policy check the finish time; ``runtime_s``, an
    estimate of the run time, lets the job backfill ahead of a blocked one. Times in
    seconds on the caller's clock."""

    id: str
    tenant: TenantView
    kind: Kind
    accelerators: int = 1
    gpu_milli: int = WHOLE
    chips: ChipConstraint = ANY_CHIP
    gang: bool = True
    topology: Topology = "node"
    priority: Priority = "high"
    residency: frozenset[str] | None = None
    residency_sources: tuple[str, ...] = ()
    model_id: str | None = None
    precision: str = "bf16"
    submitted_at: float = 0.0
    deadline: float | None = None
    tokens: float | None = None
    runtime_s: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValidationError(f"unknown kind {self.kind!r}; one of {', '.join(KINDS)}", "kind")
        if self.topology not in TOPOLOGIES:
            raise ValidationError(f"unknown topology {self.topology!r}", "topology")
        if self.priority not in ("high", "spot"):
            raise ValidationError(f"priority is high or spot, not {self.priority!r}", "priority")
        if self.accelerators < 1:
            raise ValidationError("a workload needs at least one accelerator", "accelerators")
        if not 0 < self.gpu_milli <= WHOLE:
            raise ValidationError("gpu_milli is in 1..1000", "gpu_milli")
        if self.gpu_milli < WHOLE and self.accelerators != 1:
            raise ValidationError("a share of a device (gpu_milli < 1000) is of one", "gpu_milli")

    @property
    def whole(self) -> bool:
        return self.gpu_milli == WHOLE


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as the scheduler sees it. ``free_milli``: free share of each device (None:
    all free); ``cost_micros``: the operator's cost per accelerator-hour, in micro-units."""

    name: str
    data_center: str
    country: str
    chip: str
    accelerators: int
    island: str = ""
    free_milli: tuple[int, ...] | None = None
    domestic: bool = False
    cost_micros: int = 0
    state: str = "ready"


@dataclass(frozen=True, slots=True)
class Slot:
    """Devices ``accelerators`` (indices) of ``node``, ``milli`` of each."""

    node: str
    accelerators: tuple[int, ...]
    milli: int = WHOLE


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a workload goes: one chip, its slots, and accelerators per data center."""

    workload: str
    chip: str
    slots: tuple[Slot, ...]
    parts: tuple[tuple[str, int], ...]
    score: tuple[tuple[str, float], ...] = ()

    @property
    def count(self) -> int:
        return sum(len(s.accelerators) for s in self.slots)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(s.node for s in self.slots)


@dataclass(frozen=True, slots=True)
class Running:
    workload: Workload
    placement: Placement
    expected_end: float | None = None


@dataclass
class _Pools:
    """Per-pool arrays (index = pool id)."""

    keys: list[tuple[str, str, str]] = field(default_factory=list)
    members: list[list[int]] = field(default_factory=list)  # ready nodes
    buckets: list[list[dict[int, None]]] = field(default_factory=list)


class ClusterView:
    """The fleet, indexed for placement; see the module docstring."""

    def __init__(self, nodes: Iterable[NodeView], *, chips: ChipCatalog | None = None) -> None:
        catalog = chips if chips is not None else load_catalog()
        self.nodes: list[NodeView] = list(nodes)
        self.index: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            if node.name in self.index:
                raise ValidationError(f"node {node.name!r} appears twice", "nodes")
            if node.accelerators < 1:
                raise ValidationError(f"node {node.name!r} has no accelerators", "accelerators")
            self.index[node.name] = i
        self.slots = max((n.accelerators for n in self.nodes), default=1)
        self.chip_names: list[str] = sorted({n.chip for n in self.nodes})
        self.dc_names: list[str] = sorted({n.data_center for n in self.nodes})
        self.countries: list[str] = sorted({n.country for n in self.nodes})
        self.dc_country: dict[str, str] = {n.data_center: n.country for n in self.nodes}
        chip_code = {c: i for i, c in enumerate(self.chip_names)}
        dc_code = {d: i for i, d in enumerate(self.dc_names)}
        specs = [catalog.find(c) for c in self.chip_names]
        self.chip_stack = [s.software_stack if s else None for s in specs]
        self.chip_memory = [float(s.memory_gb) if s and s.memory_gb else None for s in specs]
        self.pools = _Pools()
        pool_of: dict[tuple[str, str, str], int] = {}
        self.node_pool: list[int] = []
        first: list[NodeView] = []
        for node in self.nodes:
            key = (node.chip, node.data_center, node.island)
            if key not in pool_of:
                pool_of[key] = len(self.pools.keys)
                first.append(node)
                self.pools.keys.append(key)
                self.pools.members.append([])
                self.pools.buckets.append([{} for _ in range(self.slots + 1)])
            self.node_pool.append(pool_of[key])
        p_count = len(self.pools.keys)
        self.pool_chip: IntArray = np.array([chip_code[n.chip] for n in first], dtype=np.int64)
        self.pool_dc: IntArray = np.array([dc_code[n.data_center] for n in first], dtype=np.int64)
        country = {c: i for i, c in enumerate(self.countries)}
        self.pool_country: IntArray = np.array([country[n.country] for n in first], np.int64)
        self.chip_code, self.country_code = chip_code, country
        # (country, chip) per pool: what compliance answers alike (placement.ComplianceGate)
        self.pool_combo: IntArray = self.pool_country * len(self.chip_names) + self.pool_chip
        groups = {k: i for i, k in enumerate(sorted({(k[0], k[1]) for k in self.pools.keys}))}
        self.group_names = sorted(groups)  # (chip, data center) per group id
        self.pool_group: IntArray = np.array(
            [groups[(k[0], k[1])] for k in self.pools.keys], dtype=np.int64
        )
        self.pool_island: BoolArray = np.array([bool(k[2]) for k in self.pools.keys], np.bool_)
        self.pool_domestic: BoolArray = np.zeros(p_count, dtype=np.bool_)
        self.pool_cost = np.zeros(p_count, dtype=np.float64)
        self.pool_size: IntArray = np.zeros(p_count, dtype=np.int64)  # largest node
        self.pool_ready: IntArray = np.zeros(p_count, dtype=np.int64)  # ready nodes
        self.pool_capacity: IntArray = np.zeros(p_count, dtype=np.int64)  # their devices
        self.hist: IntArray = np.zeros((p_count, self.slots + 1), dtype=np.int64)
        self.maxwhole: IntArray = np.zeros(p_count, dtype=np.int64)
        self.whole_total: IntArray = np.zeros(p_count, dtype=np.int64)
        self.maxfree: IntArray = np.zeros(p_count, dtype=np.int64)
        self.partial_max: IntArray = np.zeros(p_count, dtype=np.int64)
        self.not_ready: Counter[tuple[int, str]] = Counter()  # (pool, state) -> nodes
        self.free: list[list[int]] = []
        self.sig: list[tuple[int, ...]] = []  # free shares, sorted: the node's shape
        self.whole: list[int] = []
        self.ready: list[bool] = []
        self.top_free = [0] * len(self.nodes)  # plain lists mirror the arrays: fast scalars
        self._node_partial = [0] * len(self.nodes)
        self._maxwhole = [0] * p_count
        self._pool_top = [0] * p_count
        self._pool_partial = [0] * p_count
        self.pool_partial = self._pool_partial  # partial_max as a list (read only)
        self._units: dict[str, IntArray] = {}
        self.node_max: IntArray = np.zeros(len(self.nodes), dtype=np.int64)
        self.node_partial: IntArray = np.zeros(len(self.nodes), dtype=np.int64)
        self.node_pools: IntArray = np.array(self.node_pool, dtype=np.int64)
        self.ready_nodes: BoolArray = np.array([n.state == "ready" for n in self.nodes], np.bool_)
        self.node_jobs: list[dict[str, Slot]] = [{} for _ in self.nodes]
        self.running: dict[str, Running] = {}
        self.spot: dict[int, set[str]] = {}  # pool -> running spot work with devices there
        costs: dict[int, list[int]] = {}
        for i, node in enumerate(self.nodes):
            p = self.node_pool[i]
            free = [WHOLE] * node.accelerators
            if node.free_milli is not None:
                free = list(node.free_milli)
            if len(free) != node.accelerators or any(not 0 <= f <= WHOLE for f in free):
                raise ValidationError(f"node {node.name!r}: bad free_milli", "free_milli")
            self.free.append(free)
            self.sig.append(tuple(sorted(free)))
            self.whole.append(sum(1 for f in free if f == WHOLE))
            self.ready.append(node.state == "ready")
            self.pool_domestic[p] |= node.domestic
            self.pool_size[p] = max(int(self.pool_size[p]), node.accelerators)
            costs.setdefault(p, []).append(node.cost_micros)
            if not self.ready[i]:
                self.not_ready[(p, node.state)] += 1
                continue
            self.pool_ready[p] += 1
            self.pool_capacity[p] += node.accelerators
            self.pools.members[p].append(i)
            self.pools.buckets[p][self.whole[i]][i] = None
            self.hist[p, self.whole[i]] += 1
            self.whole_total[p] += self.whole[i]
            self._node_stats(i)
        for p, values in costs.items():
            self.pool_cost[p] = sum(values) / len(values)
        # chip -> whole free f -> pools with a node of exactly f whole free devices
        self.fit_index: list[list[dict[int, None]]] = [
            [{} for _ in range(self.slots + 1)] for _ in self.chip_names
        ]
        self.chip_domestic = [False] * len(self.chip_names)
        self.combos: list[int] = self.pool_combo.tolist()
        self.pool_chip_list: list[int] = self.pool_chip.tolist()
        self._group_of: list[int] = self.pool_group.tolist()
        # whole free devices per (chip, data center) group
        self.group_whole: IntArray = np.bincount(
            self.pool_group, weights=self.whole_total, minlength=len(self.group_names)
        ).astype(np.int64)
        for p in range(p_count):
            self._pool_stats(p)
            chip = int(self.pool_chip[p])
            self.chip_domestic[chip] |= bool(self.pool_domestic[p])
            for f, bucket in enumerate(self.pools.buckets[p]):
                if bucket:
                    self.fit_index[chip][f][p] = None

    # --- reading ----------------------------------------------------------------------------

    def node(self, name: str) -> NodeView:
        return self.nodes[self._idx(name)]

    def free_of(self, name: str) -> tuple[int, ...]:
        return tuple(self.free[self._idx(name)])

    def pool_name(self, p: int) -> str:
        chip, dc, island = self.pools.keys[p]
        return f"{dc}/{island}/{chip}" if island else f"{dc}/{chip}"

    def utilisation(self) -> float:
        """Share of the ready devices' capacity in use."""
        ready = [i for i, r in enumerate(self.ready) if r]
        total = sum(len(self.free[i]) for i in ready) * WHOLE
        return 1 - sum(sum(self.free[i]) for i in ready) / total if total else 0.0

    def scope_units(self, topology: str) -> IntArray:
        """Per pool, the unit a multi-node gang of ``topology`` must stay in: its island
        (-1 for nodes outside any island), its (chip, data center) group, or its chip."""
        units = self._units.get(topology)
        if units is None:
            if topology == "island":
                units = np.where(self.pool_island, np.arange(len(self.pool_chip)), -1)
            else:
                units = self.pool_group if topology == "data_center" else self.pool_chip
            self._units[topology] = units
        return units

    def unit_name(self, topology: str, unit: int) -> str:
        if topology == "island":
            return f"island {self.pool_name(unit)}"
        if topology == "data_center":
            chip, dc = self.group_names[unit]
            return f"data center {dc} ({chip})"
        return f"the fleet's {self.chip_names[unit]}"

    def timeline(self, i: int, now: float) -> list[tuple[float, int, int]]:
        """(time, whole free devices, largest free share) of node ``i`` from ``now`` on, as
        running work with a known expected end leaves it (other work never leaves)."""
        free = list(self.free[i])
        out = [(now, free.count(WHOLE), max(free))]
        ends = []
        for wid, slot in self.node_jobs[i].items():
            end = self.running[wid].expected_end
            if end is not None:
                ends.append((max(end, now), slot))
        for end, slot in sorted(ends, key=lambda e: e[0]):
            for a in slot.accelerators:
                free[a] += slot.milli
            out.append((end, free.count(WHOLE), max(free)))
        return out

    def _idx(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            raise NotFoundError("node", name)
        return i

    # --- changing ---------------------------------------------------------------------------

    def allocate(
        self, workload: Workload, placement: Placement, expected_end: float | None = None
    ) -> None:
        """Take ``placement``'s devices; ``ConflictError`` (and no change) if any is short."""
        wid = workload.id
        if wid in self.running:
            raise ConflictError(f"workload {wid!r} already runs")
        index, idx = self.index, []
        for s in placement.slots:
            i = index.get(s.node)
            if i is None:
                raise NotFoundError("node", s.node)
            idx.append((i, s))
        if len(idx) > 1 and len({i for i, _ in idx}) != len(idx):
            raise ConflictError("a placement names each node once")
        for i, slot in idx:
            free, devices, milli = self.free[i], slot.accelerators, slot.milli
            if not self.ready[i] or (len(devices) > 1 and len(set(devices)) != len(devices)):
                raise ConflictError(f"node {slot.node!r} cannot hold {slot}")
            size = len(free)
            for a in devices:
                if not 0 <= a < size or free[a] < milli:
                    raise ConflictError(f"node {slot.node!r} cannot hold {slot}")
        spot = workload.priority == "spot"
        for i, slot in idx:
            self._change(i, slot, -slot.milli)
            self.node_jobs[i][wid] = slot
            if spot:
                self.spot.setdefault(self.node_pool[i], set()).add(wid)
        self.running[wid] = Running(workload, placement, expected_end)

    def release(self, workload_id: str) -> Running:
        """Give back what ``workload_id`` holds."""
        run = self.running.pop(workload_id, None)
        if run is None:
            raise NotFoundError("running workload", workload_id)
        for slot in run.placement.slots:
            i = self.index[slot.node]
            self._change(i, slot, slot.milli)
            del self.node_jobs[i][workload_id]
            self.spot.get(self.node_pool[i], set()).discard(workload_id)
        return run

    def _change(self, i: int, slot: Slot, delta: int) -> None:
        free = self.free[i]
        before = self.whole[i]
        for a in slot.accelerators:
            free[a] += delta
        after = self.whole[i] = free.count(WHOLE)
        self.sig[i] = tuple(sorted(free))
        if not self.ready[i]:
            return
        p = self.node_pool[i]
        if after != before:
            buckets = self.pools.buckets[p]
            del buckets[before][i]
            buckets[after][i] = None
            index = self.fit_index[self.pool_chip_list[p]]
            if not buckets[before]:
                del index[before][p]
            if len(buckets[after]) == 1:
                index[after][p] = None
            self.hist[p, before] -= 1
            self.hist[p, after] += 1
            self.whole_total[p] += after - before
            self.group_whole[self._group_of[p]] += after - before
            top = self._maxwhole[p]
            if after > top:
                top = after
            while top > 0 and not buckets[top]:
                top -= 1
            self._maxwhole[p] = top
            self.maxwhole[p] = top
        old_top, old_partial = self.top_free[i], self._node_partial[i]
        self._node_stats(i)
        members = self.pools.members[p]
        top, partial = self.top_free[i], self._node_partial[i]
        pool_top = self._pool_top[p]
        if top != old_top and (top > pool_top or old_top == pool_top):
            if top > pool_top:
                new = top
            elif self._maxwhole[p]:  # a node has a whole device free
                new = WHOLE
            else:
                new = max(map(self.top_free.__getitem__, members))
            self._pool_top[p] = new
            self.maxfree[p] = new
        pool_partial = self._pool_partial[p]
        if partial != old_partial and (partial > pool_partial or old_partial == pool_partial):
            new = partial
            if partial < pool_partial:
                new = max(map(self._node_partial.__getitem__, members))
            self._pool_partial[p] = new
            self.partial_max[p] = new

    def _node_stats(self, i: int) -> None:
        free = self.free[i]
        whole = self.whole[i]
        if whole + free.count(0) == len(free):  # no device shared: the common case
            top, partial = (WHOLE if whole else 0), 0
        else:
            top = max(free)
            partial = max([f for f in free if 0 < f < WHOLE], default=0)
        if top != self.top_free[i]:
            self.top_free[i] = top
            self.node_max[i] = top
        if partial != self._node_partial[i]:
            self._node_partial[i] = partial
            self.node_partial[i] = partial

    def _pool_stats(self, p: int) -> None:
        members = self.pools.members[p]
        if not members:
            return
        self.maxfree[p] = self._pool_top[p] = max(self.top_free[m] for m in members)
        self.partial_max[p] = self._pool_partial[p] = max(self._node_partial[m] for m in members)
        top = self.slots
        while top > 0 and not self.pools.buckets[p][top]:
            top -= 1
        self.maxwhole[p] = self._maxwhole[p] = top

    def whole_devices(self, i: int, count: int) -> tuple[int, ...]:
        """The first ``count`` wholly free devices of node ``i``."""
        free = self.free[i]
        if self.whole[i] == len(free):  # all free: the first ones
            return tuple(range(min(count, len(free))))
        return tuple([a for a, f in enumerate(free) if f == WHOLE][:count])

    def pool_members(self, p: int) -> list[int]:
        return self.pools.members[p]

    def bucket(self, p: int, whole: int) -> Mapping[int, None]:
        return self.pools.buckets[p][whole]


def cover(nodes: list[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """(node, devices) covering ``k`` from (free devices, node): the fullest nodes first,
    the last piece from the tightest node that can finish it."""
    left = sorted(nodes, key=lambda x: (-x[0], x[1]))
    keys = [-f for f, _ in left]  # ascending: the nodes that can finish are a prefix
    take: list[tuple[int, int]] = []
    rem = k
    while rem > 0 and left:
        fit = bisect.bisect_right(keys, -rem)  # how many hold at least rem
        at = fit - 1 if fit else 0
        f, n = left.pop(at)
        del keys[at]
        take.append((n, min(f, rem)))
        rem -= min(f, rem)
    return take
