"""Placement: filter -> score -> select, for one workload or a round of them.

**Filters**, in order, each removing nodes with a reason (worded in ``explain``):
``state`` (not ready), ``chip`` (the constraint), ``memory`` (the model does not fit, from
the perf model), ``residency`` (country), ``topology`` (the gang could never fit in one
node / island / data center of that chip), ``capacity`` (not enough free now), and
``compliance``: ``suanli.policy.evaluate.evaluate_placement``, asked per (data center,
chip) of a candidate in score order, never per node (``ComplianceGate``). Every placement
passes the engine for its exact data center, chip, count and the tenant's holdings this
round; a refusal is reused for the other data centers of that country with that chip (the
rules speak of countries and tenants), and for larger asks of the same tenant. In a round,
``reservation`` keeps backfilled work off the nodes held for the blocked head job.

**Scores**: a policy ranks candidate pools first on a preference (``throughput`` from the
perf model; ``domestic``: domestic chips whose throughput is within ``domestic_factor`` of
the best candidate first; ``cost``: the lowest operator cost per unit of work among chips
that meet the deadline, else the fastest), then packs within them: ``binpack`` (least free
left), ``spread`` (most free left) or ``fragmentation``, which picks the node and device
that least raise the expected fragmentation of the ATC'23 paper "Beware of Fragmentation"
(FGD): for a target mix of requests, the free GPU share of a node that each request could
not use (all of it when the request cannot run there at all).

**Select**: the best pool, then the best node(s) in it; a gang takes one node when any
node can hold it, else the fewest nodes of one island / data center / the fleet.

**Rounds** place high priority before spot, then first come first served, with EASY
backfilling: the first job that cannot start gets a reservation (nodes and the earliest
time they free up, from running jobs' expected ends); later jobs may start only off those
nodes, or on them when their ``runtime_s`` ends before the reservation. A high job that
does not fit may preempt spot work (newest first) in the scope that needs the fewest
preempted accelerators; the victims are returned.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar, cast

import numpy as np

from suanli.perf.model import PerfModel
from suanli.policy.evaluate import ClassOf
from suanli.policy.rules import RuleSet
from suanli.policy.snapshot import (
    FleetSnapshot,
)
from suanli.scheduler.explain import (
    Explanation,
    FilterReport,
    assemble,
    capacity_report,
    grouped,
    report,
    state_report,
    topology_report,
)
from suanli.scheduler.fragmentation import (
    DEFAULT_TARGET,
    Target,
    fragmentation,
    fragmentation_delta,
    node_fragmentation,
    target_of,
)
from suanli.scheduler.gate import ComplianceGate, catalog_class_of
from suanli.scheduler.workload import (
    WHOLE,
    BoolArray,
    ClusterView,
    FloatArray,
    IntArray,
    Placement,
    Running,
    Slot,
    Workload,
    cover,
)

__all__ = [
    "BINPACK",
    "COST",
    "DEFAULT_TARGET",
    "DOMESTIC_FIRST",
    "FRAGMENTATION",
    "POLICIES",
    "SPREAD",
    "THROUGHPUT",
    "ComplianceGate",
    "Decision",
    "Pending",
    "Policy",
    "Preemption",
    "Reservation",
    "RoundResult",
    "Scheduler",
    "Target",
    "catalog_class_of",
    "fragmentation",
    "node_fragmentation",
    "place",
    "schedule_round",
    "target_of",
]

_T = TypeVar("_T")
Pack = Literal["binpack", "spread", "fragmentation"]
Prefer = Literal["none", "throughput", "domestic", "cost"]
MAX_PREEMPTION_SCOPES = 32  # scopes (pools, data centers) a blocked job tries preempting in


@dataclass(frozen=True, slots=True)
class Policy:
    """How to rank candidates: first ``prefer`` among pools (none; throughput; domestic chips
    within ``domestic_factor`` of the best throughput; cost per unit of work that meets the
    deadline), then ``pack`` nodes within them. ``target``: the request mix fragmentation
    is measured against."""

    name: str
    pack: Pack = "binpack"
    prefer: Prefer = "none"
    domestic_factor: float = 1.5
    target: Target | None = None  # None: the mix of the pending queue (DEFAULT_TARGET alone)


BINPACK = Policy("binpack")
SPREAD = Policy("spread", pack="spread")
FRAGMENTATION = Policy("fragmentation", pack="fragmentation")
THROUGHPUT = Policy("throughput", pack="fragmentation", prefer="throughput")
DOMESTIC_FIRST = Policy("domestic-first", pack="fragmentation", prefer="domestic")
COST = Policy("cost", pack="binpack", prefer="cost")
POLICIES = {p.name: p for p in (BINPACK, SPREAD, FRAGMENTATION, THROUGHPUT, DOMESTIC_FIRST, COST)}


@dataclass(frozen=True, slots=True)
class Decision:
    """Where the workload goes (``None``: it waits) and why."""

    placement: Placement | None
    explanation: Explanation


@dataclass(frozen=True, slots=True)
class Pending:
    workload: str
    reason: str
    explanation: Explanation | None = None


@dataclass(frozen=True, slots=True)
class Preemption:
    victim: str
    by: str
    placement: Placement


@dataclass(frozen=True, slots=True)
class Reservation:
    workload: str
    nodes: tuple[str, ...]
    start: float


@dataclass(frozen=True)
class RoundResult:
    """What a round placed (in order), what waits and why, the spot work it stopped, the
    head job's reservation and the jobs that started while it waited (backfilled)."""

    placed: tuple[Placement, ...]
    pending: tuple[Pending, ...]
    preempted: tuple[Preemption, ...] = ()
    reservation: Reservation | None = None
    backfilled: tuple[str, ...] = ()


@functools.cache
def default_perf() -> PerfModel:
    return PerfModel()


@dataclass
class _Shape:
    """What depends on the request alone: static filters and the perf rate per pool."""

    k: int
    mask: BoolArray
    wording: list[Callable[[], FilterReport]]
    rate: FloatArray  # per pool; 0 = unknown
    tokens_rate: bool  # the rate is tokens/s (a model was named)
    chip_rate: list[float]  # per chip
    ok: list[bool]  # mask, as a list
    chips: list[int]  # chips with a pool in mask
    _reports: list[FilterReport] | None = None

    @property
    def reports(self) -> list[FilterReport]:
        if self._reports is None:
            self._reports = [word() for word in self.wording]
        return self._reports


@dataclass
class _Notes:
    capacity: FilterReport | None = None
    survivors: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    reserved: int = 0


class Scheduler:
    """Places workloads on ``cluster`` under ``rules``; ``snapshot`` is what the compliance
    engine sees (data centers and the allocations already held). Caches what it can."""

    def __init__(
        self,
        cluster: ClusterView,
        rules: RuleSet,
        snapshot: FleetSnapshot,
        policy: Policy = THROUGHPUT,
        *,
        perf: PerfModel | None = None,
        class_of: ClassOf | None = None,
        now: float = 0.0,
    ) -> None:
        self.cluster, self.rules, self.snapshot, self.policy = cluster, rules, snapshot, policy
        self.perf = perf if perf is not None else default_perf()
        self.class_of = class_of if class_of is not None else catalog_class_of
        self.now = now
        self.target: Target = policy.target or DEFAULT_TARGET
        self._deltas: dict[tuple[tuple[int, ...], int, int], tuple[float, int]] = {}
        self.reserved: dict[int, float] = {}
        self._shapes: dict[tuple[object, ...], _Shape] = {}
        self._memos: dict[tuple[object, ...], object] = {}
        self.gate = ComplianceGate(cluster, rules, snapshot, self.class_of)

    # --- public ---------------------------------------------------------------------------

    def place(self, workload: Workload, *, commit: bool = False) -> Decision:
        """The best placement of ``workload`` now (taken when ``commit``), explained."""
        shape = self._shape(workload)
        notes = _Notes()
        placement = self._place(workload, shape, notes)
        if placement is not None and commit:
            self._commit(workload, placement)
        return Decision(placement, self._explain(workload, shape, notes, placement))

    def explain(self, workload: Workload) -> Explanation:
        return self.place(workload).explanation

    def schedule_round(
        self, pending: Sequence[Workload], *, now: float | None = None, explain: bool = True
    ) -> RoundResult:
        """Place ``pending`` in priority order with EASY backfilling and preemption of spot
        work, updating the cluster as it goes. ``explain``: explain each job left waiting."""
        self.now = self.now if now is None else now
        self.target = self.policy.target or target_of(pending, self.cluster.slots)
        self._deltas = {}
        self.reserved = {}
        placed: list[Placement] = []
        waiting: list[Pending] = []
        preempted: list[Preemption] = []
        backfilled: list[str] = []
        reservation: Reservation | None = None
        for w in sorted(pending, key=lambda w: (w.priority != "high", w.submitted_at, w.id)):
            shape = self._shape(w)
            feasible = bool(shape.mask.any())
            placement = self._place(w, shape, None) if feasible else None
            if placement is None and feasible and w.priority == "high":
                victims, placement = self._preempt(w, shape)
                preempted += [Preemption(v.workload.id, w.id, v.placement) for v in victims]
            if placement is not None:
                self._commit(w, placement)
                placed.append(placement)
                if reservation is not None:
                    backfilled.append(w.id)
                continue
            expl = self.explain(w) if explain else None
            waiting.append(Pending(w.id, expl.outcome if expl else "does not fit now", expl))
            if reservation is None and feasible:
                reservation = self._reserve(w, shape)
                if reservation is not None:
                    index = self.cluster.index
                    self.reserved = {index[n]: reservation.start for n in reservation.nodes}
        self.reserved = {}
        return RoundResult(
            tuple(placed), tuple(waiting), tuple(preempted), reservation, tuple(backfilled)
        )

    # --- filters: state, chip, memory, residency, topology (the request alone) -------------

    def _shape(self, w: Workload) -> _Shape:
        key: tuple[object, ...] = (w.kind, w.model_id, w.precision, w.accelerators, w.gpu_milli)
        key += (w.gang, w.topology, w.chips, w.residency)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = self._build_shape(w)
        return shape

    def _build_shape(self, w: Workload) -> _Shape:
        """The static filters as masks; their reports are worded only when asked for."""
        c = self.cluster
        k = w.accelerators if w.gang else 1
        chips = self._memo(
            ("chip", w.chips),
            lambda: [w.chips.refusal(x, c.chip_stack[i], c.chip_memory[i])
                     for i, x in enumerate(c.chip_names)],
        )  # fmt: skip
        ests = self._memo(
            ("perf", w.kind, w.model_id, w.precision, k, w.gpu_milli),
            lambda: [self.perf.throughput(w.kind, w.model_id, x, w.precision, k,
                                          gpu_milli=w.gpu_milli) for x in c.chip_names],
        )  # fmt: skip
        memory = [None if w.model_id is None or e.fits else e.memory for e in ests]
        res = w.residency
        where = "/".join(sorted(res or ())) or "no country"
        places = [
            None if res is None or x in res else f"{x} is outside {where}" for x in c.countries
        ]
        chip_ok = np.array([a is None and b is None for a, b in zip(chips, memory, strict=True)])
        country_ok = np.array([r is None for r in places], dtype=np.bool_)
        ready = c.pool_ready > 0
        by_chip = ready & np.array([r is None for r in chips], dtype=np.bool_)[c.pool_chip]
        alive = ready & chip_ok[c.pool_chip]
        after_res = alive & country_ok[c.pool_country]
        ok = self._topology_ok(w, k, after_res)
        mask = after_res & ok
        nodes = c.pool_ready
        wording: list[Callable[[], FilterReport]] = [
            lambda: state_report(c),
            lambda: grouped("chip", chips, c.pool_chip, ready & ~by_chip, nodes),
            lambda: grouped("memory", memory, c.pool_chip, by_chip & ~alive, nodes),
            lambda: grouped("residency", places, c.pool_country, alive & ~after_res, nodes),
            lambda: topology_report(c, w, k, after_res & ~ok),
        ]
        if w.model_id is None:
            del wording[2]
        chip_rate = [e.rate or 0.0 for e in ests]
        present = [i for i, good in enumerate(chip_ok.tolist()) if good]
        rate = np.array(chip_rate)[c.pool_chip]
        return _Shape(
            k, mask, wording, rate, w.model_id is not None, chip_rate, mask.tolist(), present
        )

    def _memo(self, key: tuple[object, ...], make: Callable[[], _T]) -> _T:
        if key not in self._memos:
            self._memos[key] = make()
        return cast(_T, self._memos[key])

    def _topology_ok(self, w: Workload, k: int, alive: BoolArray) -> BoolArray:
        c = self.cluster
        one_node: BoolArray = c.pool_size >= k
        if w.topology == "node" or not w.gang or w.gpu_milli < WHOLE:
            return one_node
        units = c.scope_units(w.topology)
        inside = alive & (units >= 0)
        cap = np.bincount(units[inside], weights=c.pool_capacity[inside], minlength=len(units))
        return one_node | ((units >= 0) & (cap[np.maximum(units, 0)] >= k))

    # --- score and select -----------------------------------------------------------------

    def _place(
        self, w: Workload, shape: _Shape, notes: _Notes | None, restrict: BoolArray | None = None
    ) -> Placement | None:
        cand = shape.mask if restrict is None else shape.mask & restrict
        if notes is not None:
            notes.capacity, notes.survivors = capacity_report(self.cluster, w, shape.k, cand)
        if not w.gang and w.accelerators > 1:
            return self._replicas(w, shape, cand, notes)
        found = None
        if shape.k <= self.cluster.slots:
            found = self._single(w, shape, cand.copy(), notes, restrict is None)
        if found is None and w.gang and w.topology != "node" and w.gpu_milli == WHOLE:
            found = self._gang(w, shape, cand.copy(), notes)
        return found

    def _delta(self, sig: tuple[int, ...], k: int, d: int) -> tuple[float, int]:
        key = (sig, k, d)
        found = self._deltas.get(key)
        if found is None:
            found = self._deltas[key] = fragmentation_delta(sig, k, d, self.target)
        return found

    def _usable(self, n: int, w: Workload) -> bool:
        t = self.reserved.get(n)
        return t is None or (w.runtime_s is not None and self.now + w.runtime_s <= t)

    def _prefs(self, idx: IntArray, w: Workload, shape: _Shape) -> tuple[FloatArray, FloatArray]:
        """The policy's preference of each pool of ``idx``: (tier, value), higher first."""
        c, prefer = self.cluster, self.policy.prefer
        rate = shape.rate[idx]
        if prefer == "domestic":
            best = rate.max()
            near = rate * self.policy.domestic_factor >= best if best > 0 else True
            return (c.pool_domestic[idx] & near).astype(np.float64), rate
        if prefer != "cost":
            return np.zeros(len(idx)), rate if prefer == "throughput" else np.zeros(len(idx))
        known = rate > 0
        cost = c.pool_cost[idx]
        per_work = cost / np.where(known, rate, 1.0)
        meets = known
        if w.deadline is not None and w.tokens is not None and shape.tokens_rate:
            meets = known & (self.now + w.tokens / np.where(known, rate, 1.0) <= w.deadline)
        tier = np.where(meets, 2.0, np.where(known | (w.deadline is not None), 0.0, 1.0))
        return tier, np.where(meets, -per_work, np.where(known, rate, -cost))

    def _top(self, idx: IntArray, w: Workload, shape: _Shape) -> IntArray:
        """The pools of ``idx`` that tie first on the policy's preference."""
        if self.policy.prefer == "none" or len(idx) < 2:
            return idx
        if self.policy.prefer == "throughput":  # one tier: the fastest chips
            rate = shape.rate[idx]
            top: IntArray = idx[rate >= rate.max() - 1e-9]
            return top
        tier, value = self._prefs(idx, w, shape)
        first = tier == tier.max()
        top = idx[first & (value >= value[first].max() - 1e-9)]
        return top

    def _order(self, idx: IntArray, w: Workload, shape: _Shape) -> IntArray:
        """``idx``, best preference first (pool id breaks ties)."""
        if self.policy.prefer == "none" or len(idx) < 2:
            return idx
        tier, value = self._prefs(idx, w, shape)
        ranked: IntArray = idx[np.lexsort((idx, -value, -tier))]
        return ranked

    def _pref_score(self, p: int, w: Workload, shape: _Shape) -> list[tuple[str, float]]:
        prefer, rate = self.policy.prefer, float(shape.rate[p])
        out: list[tuple[str, float]] = []
        if prefer == "domestic":
            out.append(("domestic", float(self.cluster.pool_domestic[p])))
        if prefer == "cost":
            out.append(("cost_per_hour", float(self.cluster.pool_cost[p]) / 1e6))
            if w.deadline is not None and w.tokens is not None and rate and shape.tokens_rate:
                out.append(("finish", self.now + w.tokens / rate))
        if prefer != "none":
            out.append(("tokens_per_s" if shape.tokens_rate else "rate", rate))
        return out

    def _single(
        self, w: Workload, shape: _Shape, cand: BoolArray, notes: _Notes | None, indexed: bool
    ) -> Placement | None:
        """One node. Whole devices under a per-chip preference walk the fit index (pure
        Python, fast); the rest rank the candidate pools as arrays."""
        c, k, d = self.cluster, shape.k, w.gpu_milli
        known = self.gate.known(w, k)
        skip_combos = set().union(*known.values()) if known else set()
        skip_pools: set[int] = set()
        if notes is not None:
            for sentence, combos in known.items():
                alike = cand & np.isin(c.pool_combo, list(combos))
                notes.refused[sentence] += int(c.pool_ready[alike].sum())
        fast = indexed and d == WHOLE and self.policy.prefer != "cost"
        if not fast:
            cand &= (c.maxwhole >= k) if d == WHOLE else (c.maxfree >= d)
            if skip_combos:
                cand &= ~np.isin(c.pool_combo, list(skip_combos))
        while True:
            if fast:
                p = self._indexed_pool(w, shape, k, skip_pools, skip_combos)
            else:
                p = self._vector_pool(w, shape, cand, k, d)
            if p is None:
                return None
            pick = self._pick_node(p, w, k, d)
            if pick is None:  # only reserved nodes fit
                if notes is not None:
                    notes.reserved += sum(n in self.reserved for n in c.pool_members(p))
                skip_pools.add(p)
                cand[p] = False
                continue
            n, devices, packing = pick
            chip, dc = c.pools.keys[p][0], c.pools.keys[p][1]
            refusal = self.gate.check(w, chip, ((dc, k),))
            if refusal is not None:
                alike = c.pool_combo == c.combos[p]
                if notes is not None:
                    notes.refused[refusal[1]] += int(c.pool_ready[cand & alike].sum())
                skip_combos.add(c.combos[p])
                cand &= ~alike
                continue
            name = "fragmentation_delta" if self.policy.pack == "fragmentation" else "free_after"
            score = (*self._pref_score(p, w, shape), (name, packing))
            return Placement(w.id, chip, (Slot(c.nodes[n].name, devices, d),), ((dc, k),), score)

    def _vector_pool(
        self, w: Workload, shape: _Shape, cand: BoolArray, k: int, d: int
    ) -> int | None:
        """The best candidate pool: first on the policy's preference, then packing."""
        c = self.cluster
        if not cand.any():
            return None
        idx = self._top(np.flatnonzero(cand), w, shape)
        if self.policy.pack == "spread":
            return int(idx[np.argmax(c.maxwhole[idx] if d == WHOLE else c.maxfree[idx])])
        if d == WHOLE:  # the pool with the tightest fitting node
            return int(idx[np.argmin(np.argmax(c.hist[idx, k:] > 0, axis=1))])
        pm = c.partial_max[idx]  # a partly used device that fits first, the tightest such
        return int(idx[np.argmin(np.where(pm >= d, pm, 2 * WHOLE))])

    def _indexed_pool(
        self, w: Workload, shape: _Shape, k: int, skip_pools: set[int], skip_combos: set[int]
    ) -> int | None:
        """``_vector_pool`` for whole devices when the preference is per chip: per eligible
        chip, the first pool of the fit index at the tightest (or, to spread, loosest) fit;
        then the chip the policy prefers (ties: the tighter fit, then the lower chip)."""
        c, ok, combos = self.cluster, shape.ok, self.cluster.combos
        spread = self.policy.pack == "spread"
        fits = range(c.slots, k - 1, -1) if spread else range(k, c.slots + 1)
        avail: list[tuple[int, int, int]] = []  # (chip, pool, whole free)
        for chip in shape.chips:
            index = c.fit_index[chip]
            for f in fits:
                for p in index[f]:
                    if ok[p] and p not in skip_pools and combos[p] not in skip_combos:
                        avail.append((chip, p, -f if spread else f))
                        break
                else:
                    continue
                break
        if not avail:
            return None
        rate = shape.chip_rate
        prefer = self.policy.prefer
        if prefer == "none":
            return min(avail, key=lambda a: a[2])[1]
        if prefer == "throughput":
            return min(avail, key=lambda a: (-rate[a[0]], a[2]))[1]
        best = max(rate[a[0]] for a in avail)
        factor = self.policy.domestic_factor

        def near(chip: int) -> bool:
            return c.chip_domestic[chip] and (rate[chip] * factor >= best or best <= 0)

        return min(avail, key=lambda a: (not near(a[0]), -rate[a[0]], a[2]))[1]

    def _pick_node(
        self, p: int, w: Workload, k: int, d: int
    ) -> tuple[int, tuple[int, ...], float] | None:
        """Best node of pool ``p``: (node, devices, packing score: free left on the node
        for binpack and spread, increase of fragmentation for FGD)."""
        c, pack = self.cluster, self.policy.pack
        best: tuple[float, float, int, int] | None = None  # (key, tie, node, device)
        check = self._usable if self.reserved else None
        if d == WHOLE:
            seen: set[tuple[int, ...]] = set()  # nodes of one shape score alike: the first
            uniform = c.partial_max[p] == 0  # no shared device: one shape per free count
            for f in range(c.slots, k - 1, -1) if pack == "spread" else range(k, c.slots + 1):
                for n in c.bucket(p, f):
                    if check is not None and not check(n, w):
                        continue
                    if pack != "fragmentation":
                        best = (f - k, f, n, -1)
                        break
                    sig = c.sig[n]
                    if sig not in seen:
                        seen.add(sig)
                        delta = self._delta(sig, k, d)[0]
                        if best is None or (delta, f) < best[:2]:
                            best = (delta, f, n, -1)
                    if uniform:
                        break
                if best is not None and pack != "fragmentation":
                    break
            if best is None:
                return None
            n = best[2]
            return n, c.whole_devices(n, k), best[0]
        for n in c.pool_members(p):
            if c.top_free[n] < d or (check is not None and not check(n, w)):
                continue
            free = c.free[n]
            if pack == "fragmentation":
                delta, share = self._delta(c.sig[n], 1, d)
                a = free.index(share)
                key = (delta, share - d, n, a)
            elif pack == "spread":
                a = max(range(len(free)), key=lambda a: free[a])
                key = (d - free[a], 0, n, a)
            else:
                a = min((a for a, f in enumerate(free) if f >= d), key=lambda a: free[a])
                key = (free[a] - d, 0, n, a)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        return best[2], (best[3],), best[0] if pack == "fragmentation" else abs(best[0])

    def _gang(
        self, w: Workload, shape: _Shape, cand: BoolArray, notes: _Notes | None
    ) -> Placement | None:
        """A gang over the fewest nodes of one island / data center / the fleet (one chip)."""
        c, k = self.cluster, shape.k
        units = c.scope_units(w.topology)
        cand &= (units >= 0) & (c.whole_total > 0)
        for sentence, combos in self.gate.known(w, 1).items():
            gone = cand & np.isin(c.pool_combo, list(combos))
            if notes is not None:
                notes.refused[sentence] += int(c.pool_ready[gone].sum())
            cand &= ~gone
        clipped = np.maximum(units, 0)
        anywhere = w.topology == "any"  # else a unit passes or fails the filters as a whole
        free: IntArray | FloatArray = c.whole_total if w.topology == "island" else c.group_whole
        while cand.any():
            if anywhere:
                free = np.bincount(units[cand], weights=c.whole_total[cand], minlength=len(units))
            fits = cand & (free[clipped] >= k)
            if not fits.any():
                return None
            idx = self._top(np.flatnonzero(fits), w, shape)
            caps = free[units[idx]]
            u = int(
                units[idx[np.argmax(caps) if self.policy.pack == "spread" else np.argmin(caps)]]
            )
            found = np.flatnonzero(cand & (units == u))
            if anywhere:  # pools of several data centers: the preferred ones first
                found = self._order(found, w, shape)
            members: list[int] = found.tolist()
            nodes = [(f, n) for p in members for f in range(c.slots, 0, -1) for n in c.bucket(p, f)]
            nodes = [(f, n) for f, n in nodes if self._usable(n, w)]
            if sum(f for f, _ in nodes) < k:
                if notes is not None:
                    held = (n for p in members for n in c.pool_members(p))
                    notes.reserved += sum(n in self.reserved for n in held)
                cand &= units != u
                continue
            take = cover(nodes, k)
            parts = Counter[str]()
            for n, m in take:
                parts[c.nodes[n].data_center] += m
            chip = c.pools.keys[members[0]][0]
            refusal = self.gate.check(w, chip, tuple(sorted(parts.items())))
            if refusal is not None:
                combo = c.country_code[c.dc_country[refusal[0]]] * len(c.chip_names)
                bad = c.pool_combo == combo + c.pool_chip_list[members[0]]
                if notes is not None:
                    notes.refused[refusal[1]] += int(c.pool_ready[cand & bad].sum())
                cand &= ~bad
                continue
            slots = tuple(Slot(c.nodes[n].name, c.whole_devices(n, m)) for n, m in take)
            score = [*self._pref_score(members[0], w, shape), ("nodes", float(len(take)))]
            score.append(("scope_free_after", float(free[u] - k)))
            return Placement(w.id, chip, slots, tuple(sorted(parts.items())), tuple(score))
        return None

    def _replicas(
        self, w: Workload, shape: _Shape, cand: BoolArray, notes: _Notes | None
    ) -> Placement | None:
        """Independent single devices, one chip, as many as fit (at least one)."""
        c = self.cluster
        taken: list[Placement] = []
        try:
            for i in range(w.accelerators):
                one = replace(w, id=f"{w.id}#{i}", accelerators=1)
                found = self._single(one, shape, cand.copy(), notes if i == 0 else None, False)
                if found is None:
                    break
                cand = cand & (c.pool_chip == c.chip_names.index(found.chip))
                self._commit(one, found)
                taken.append(found)
        finally:
            for found in taken:
                self._uncommit(found.workload)
        if not taken:
            return None
        by_node: dict[str, list[int]] = {}
        parts = Counter[str]()
        for found in taken:
            by_node.setdefault(found.slots[0].node, []).extend(found.slots[0].accelerators)
            parts[found.parts[0][0]] += 1
        slots = tuple(Slot(n, tuple(sorted(a))) for n, a in by_node.items())
        score = (*taken[0].score, ("replicas", float(len(taken))))
        return Placement(w.id, taken[0].chip, slots, tuple(sorted(parts.items())), score)

    def _commit(self, w: Workload, placement: Placement) -> None:
        end = None if w.runtime_s is None else self.now + w.runtime_s
        self.cluster.allocate(w, placement, end)
        for dc, n in placement.parts:
            self.gate.hold(w.tenant.name, dc, placement.chip, n)

    def _uncommit(self, workload_id: str) -> Running:
        run = self.cluster.release(workload_id)
        for dc, n in run.placement.parts:
            self.gate.hold(run.workload.tenant.name, dc, run.placement.chip, -n)
        return run

    def _recommit(self, run: Running) -> None:
        self.cluster.allocate(run.workload, run.placement, run.expected_end)
        for dc, n in run.placement.parts:
            self.gate.hold(run.workload.tenant.name, dc, run.placement.chip, n)

    # --- preemption and reservation -------------------------------------------------------

    def _preempt(self, w: Workload, shape: _Shape) -> tuple[list[Running], Placement | None]:
        """Spot work to stop so that ``w`` fits: in each scope (pool; or data center / chip
        for gangs spanning those) holding spot work, stop the newest until it fits; keep the
        scope that stops the fewest accelerators."""
        c = self.cluster
        spot = c.spot
        pools = np.array(sorted(p for p, ids in spot.items() if ids and shape.mask[p]), np.int64)
        if not len(pools):
            return [], None
        wide = w.gang and w.topology in ("data_center", "any") and w.gpu_milli == WHOLE
        units = c.scope_units(w.topology) if wide else np.arange(len(c.pool_chip))
        ranked = self._order(pools, w, shape)
        scopes = list(dict.fromkeys(int(units[p]) for p in ranked))[:MAX_PREEMPTION_SCOPES]
        best: tuple[int, int, list[str]] | None = None
        for u in scopes:
            inside = np.flatnonzero(units == u)
            victims = sorted({v for p in inside for v in spot.get(int(p), ())},
                             key=lambda v: (-c.running[v].workload.submitted_at, v))  # fmt: skip
            stopped: list[Running] = []
            fits = False
            for v in victims:
                stopped.append(self._uncommit(v))
                if self._place(w, shape, None, units == u) is not None:
                    fits = True
                    break
            for run in reversed(stopped):
                self._recommit(run)
            cost = sum(r.placement.count for r in stopped)
            if fits and (best is None or cost < best[0]):
                best = (cost, u, [r.workload.id for r in stopped])
        if best is None:
            return [], None
        runs = [self._uncommit(v) for v in best[2]]
        return runs, self._place(w, shape, None, units == best[1])

    def _reserve(self, w: Workload, shape: _Shape) -> Reservation | None:
        """EASY: the nodes where ``w`` can start first as running work with a known end
        leaves, and when. ``None`` when no known end ever frees enough."""
        c, k, d = self.cluster, shape.k, w.gpu_milli
        best: tuple[float, list[int]] | None = None
        multi = w.gang and w.topology != "node" and d == WHOLE
        units = c.scope_units(w.topology)
        events: dict[int, list[tuple[float, int, int]]] = {}
        allowed: dict[tuple[int, int], bool] = {}  # (country, chip), as in _single
        for p in np.flatnonzero(shape.mask):
            alike = (int(c.pool_country[p]), int(c.pool_chip[p]))
            if alike not in allowed:
                chip, dc = c.group_names[int(c.pool_group[p])]
                allowed[alike] = self.gate.check(w, chip, ((dc, k),)) is None
            if not allowed[alike]:
                continue
            for n in c.pool_members(int(p)):
                line = c.timeline(n, self.now)
                for t, whole, top in line if k <= c.slots else ():
                    if (whole >= k if d == WHOLE else top >= d) and (best is None or t < best[0]):
                        best = (t, [n])
                        break
                if multi and units[p] >= 0:
                    prev = 0
                    for t, whole, _ in line:
                        events.setdefault(int(units[p]), []).append((t, n, whole - prev))
                        prev = whole
        for evs in events.values():
            have = Counter[int]()
            evs.sort(key=lambda e: e[0])
            for i, (t, n, delta) in enumerate(evs):
                have[n] += delta
                last_at_t = i + 1 == len(evs) or evs[i + 1][0] > t
                if last_at_t and sum(have.values()) >= k:
                    if best is None or t < best[0]:
                        best = (
                            t,
                            [n for n, _ in cover([(f, n) for n, f in have.items() if f], k)],
                        )
                    break
        if best is None:
            return None
        return Reservation(w.id, tuple(c.nodes[n].name for n in best[1]), best[0])

    # --- explanation ----------------------------------------------------------------------

    def _explain(
        self, w: Workload, shape: _Shape, notes: _Notes, placement: Placement | None
    ) -> Explanation:
        filters = [*shape.reports]
        if notes.capacity is not None:
            filters.append(notes.capacity)
        filters.append(report("compliance", notes.refused))
        if self.reserved:
            held = "held for the job at the head of the queue"
            filters.append(report("reservation", {held: notes.reserved}))
        gone = sum(notes.refused.values()) + notes.reserved
        survivors = max(notes.survivors - gone, 0) if shape.mask.any() else 0
        return assemble(w, self.cluster, filters, survivors, placement, self.policy.name)


def place(
    workload: Workload,
    cluster: ClusterView,
    policy: Policy,
    rules: RuleSet,
    snapshot: FleetSnapshot,
    *,
    perf: PerfModel | None = None,
    class_of: ClassOf | None = None,
    now: float = 0.0,
) -> Decision:
    """One placement decision, explained; the cluster is not changed."""
    scheduler = Scheduler(cluster, rules, snapshot, policy, perf=perf, class_of=class_of, now=now)
    return scheduler.place(workload)


def schedule_round(
    pending: Sequence[Workload],
    cluster: ClusterView,
    policy: Policy,
    rules: RuleSet,
    snapshot: FleetSnapshot,
    *,
    perf: PerfModel | None = None,
    class_of: ClassOf | None = None,
    now: float = 0.0,
) -> RoundResult:
    """One scheduling round over ``pending``; the cluster is updated."""
    scheduler = Scheduler(cluster, rules, snapshot, policy, perf=perf, class_of=class_of, now=now)
    return scheduler.schedule_round(pending)
