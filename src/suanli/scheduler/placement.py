"""Placement: filter -> score -> select, for one workload or a round of them.

**Filters**, in order, each removing nodes with a reason (worded in ``explain``):
``state`` (not ready), ``chip`` (the constraint), ``memory`` (the model does not fit, from
the perf model), ``residency`` (country), ``topology`` (the gang could never fit in one
node / island / data center of that chip): these depend on the request alone
(``suanli.scheduler.shape``); then ``capacity`` (not enough free now), and
``compliance``: ``suanli.policy.evaluate.evaluate_placement``, asked per (data center,
chip) of a candidate in score order, never per node (``ComplianceGate``). Every placement
passes the engine for its data center, chip, count and the tenant's holdings this round,
or is covered by an answer to a question that asked and held no less; a refusal is reused
for the other data centers of that country with that chip (the rules speak of countries
and tenants), and for larger asks of the same tenant. In a round, ``reservation`` keeps
backfilled work off the nodes held for the blocked head job.

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
backfilling (``suanli.scheduler.backfill``): the first job that cannot start gets a
reservation (nodes and the earliest time they free up, from running jobs' expected ends);
later jobs may start only off those nodes, or on them when their ``runtime_s`` ends
before the reservation. A high job that does not fit may preempt spot work
(``suanli.scheduler.preempt``): newest first, in the scope that needs the fewest
preempted accelerators; the victims are returned.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from suanli.perf.model import PerfModel
from suanli.policy.evaluate import ClassOf
from suanli.policy.rules import RuleSet
from suanli.policy.snapshot import (
    FleetSnapshot,
)
from suanli.scheduler.backfill import Reservation, reserve
from suanli.scheduler.explain import (
    Explanation,
    FilterReport,
    assemble,
    capacity_report,
    report,
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
from suanli.scheduler.preempt import MAX_PREEMPTION_SCOPES, Preemption, preempt
from suanli.scheduler.shape import Shape, Shapes
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
    "MAX_PREEMPTION_SCOPES",
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

Pack = Literal["binpack", "spread", "fragmentation"]
Prefer = Literal["none", "throughput", "domestic", "cost"]


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


@dataclass(frozen=True)
class RoundResult:
    """What a round placed (in order), what waits and why, the spot work it stopped, the
    head job's reservation and the jobs that started while it waited (backfilled)."""

    placed: tuple[Placement, ...]
    pending: tuple[Pending, ...]
    preempted: tuple[Preemption, ...] = ()
    reservation: Reservation | None = None
    backfilled: tuple[str, ...] = ()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused (when it runs): a round makes and drops
    many small objects, no reference cycles among them, and each full collection would walk
    the whole fleet's index (0.2-0.4 s of a round at 100,000 accelerators). Reference
    counting frees as always. What the round made and kept (placements, the cluster's
    records, the gate's answers) is long-lived: it goes straight to the oldest generation,
    as young collections would send it after walking it (unless objects were frozen before:
    ``gc.freeze`` is theirs then)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()


def _in_combos(c: ClusterView, combos: Iterable[int]) -> BoolArray:
    """Per pool: is its (country, chip) combo (``ClusterView.pool_combo``) in ``combos``?"""
    inside = np.zeros(len(c.countries) * len(c.chip_names), dtype=np.bool_)
    inside[list(combos)] = True
    found: BoolArray = inside[c.pool_combo]
    return found


@functools.cache
def default_perf() -> PerfModel:
    return PerfModel()


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
        self._shapes = Shapes(cluster, self.perf)
        self._chip_combos: dict[int, set[int]] = {}
        self._units: dict[str, tuple[IntArray, BoolArray, IntArray]] = {}
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
        with _collector_paused():
            return self._round(pending, explain)

    def _round(self, pending: Sequence[Workload], explain: bool) -> RoundResult:
        self.target = self.policy.target or target_of(pending, self.cluster.slots)
        self._deltas = {}
        self.reserved = {}
        placed: list[Placement] = []
        waiting: list[Pending] = []
        preempted: list[Preemption] = []
        backfilled: list[str] = []
        reservation: Reservation | None = None
        for w in sorted(pending, key=lambda w: (w.priority != "high", w.submitted_at, w.id)):
            shape = self._shapes.of(w)
            feasible = shape.feasible
            placement = self._place(w, shape, None) if feasible else None
            if placement is None and feasible and w.priority == "high":
                victims, placement = preempt(self, w, shape)
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
                reservation = reserve(self, w, shape)
                if reservation is not None:
                    index = self.cluster.index
                    self.reserved = {index[n]: reservation.start for n in reservation.nodes}
        self.reserved = {}
        return RoundResult(
            tuple(placed), tuple(waiting), tuple(preempted), reservation, tuple(backfilled)
        )

    # --- filters: state, chip, memory, residency, topology (the request alone) -------------

    def _shape(self, w: Workload) -> Shape:
        return self._shapes.of(w)

    # --- score and select -----------------------------------------------------------------

    def _place(
        self, w: Workload, shape: Shape, notes: _Notes | None, restrict: BoolArray | None = None
    ) -> Placement | None:
        cand = shape.mask if restrict is None else shape.mask & restrict
        if notes is not None:
            notes.capacity, notes.survivors = capacity_report(self.cluster, w, shape.k, cand)
        if not w.gang and w.accelerators > 1:
            return self._replicas(w, shape, cand, notes)
        found = None
        if shape.k <= self.cluster.slots:
            found = self._single(w, shape, cand, notes, restrict is None)
        if found is None and w.gang and w.topology != "node" and w.gpu_milli == WHOLE:
            found = self._gang(w, shape, cand, notes)
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

    def _prefs(self, idx: IntArray, w: Workload, shape: Shape) -> tuple[FloatArray, FloatArray]:
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
        # a pool without a known cost (0) is not free: it ranks after the priced ones
        priced = cost > 0
        tier = 2.0 * tier + priced
        return tier, np.where(meets & priced, -per_work, np.where(known, rate, -cost))

    def _top(self, idx: IntArray, w: Workload, shape: Shape) -> IntArray:
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

    def _order(self, idx: IntArray, w: Workload, shape: Shape) -> IntArray:
        """``idx``, best preference first (pool id breaks ties)."""
        if self.policy.prefer == "none" or len(idx) < 2:
            return idx
        tier, value = self._prefs(idx, w, shape)
        ranked: IntArray = idx[np.lexsort((idx, -value, -tier))]
        return ranked

    def _pref_score(self, p: int, w: Workload, shape: Shape) -> list[tuple[str, float]]:
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
        self, w: Workload, shape: Shape, cand: BoolArray, notes: _Notes | None, indexed: bool
    ) -> Placement | None:
        """One node. Whole devices under a per-chip preference walk the fit index (pure
        Python, fast); the rest rank the candidate pools as arrays."""
        c, k, d = self.cluster, shape.k, w.gpu_milli
        known = self.gate.known(w, k)
        skip_combos = set().union(*known.values()) if known else set()
        skip_pools: set[int] = set()
        if notes is not None:
            for sentence, combos in known.items():
                alike = cand & _in_combos(c, combos)
                notes.refused[sentence] += int(c.pool_ready[alike].sum())
        fast = indexed and d == WHOLE and self.policy.prefer != "cost"
        track = not fast or notes is not None  # cand: the pools left (else the index says)
        if not fast:
            cand = cand & ((c.maxwhole >= k) if d == WHOLE else (c.maxfree >= d))
            if skip_combos:
                cand &= ~_in_combos(c, skip_combos)
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
                if track:
                    cand = cand.copy()
                    cand[p] = False
                continue
            n, devices, packing = pick
            chip, dc = c.pools.keys[p][0], c.pools.keys[p][1]
            refusal = self.gate.refusal(w, dc, chip, k)
            if refusal is not None:
                skip_combos.add(c.combos[p])
                if track:
                    alike = c.pool_combo == c.combos[p]
                    if notes is not None:
                        notes.refused[refusal] += int(c.pool_ready[cand & alike].sum())
                    cand = cand & ~alike
                continue
            name = "fragmentation_delta" if self.policy.pack == "fragmentation" else "free_after"
            score = (*self._pref_score(p, w, shape), (name, packing))
            return Placement(w.id, chip, (Slot(c.nodes[n].name, devices, d),), ((dc, k),), score)

    def _vector_pool(
        self, w: Workload, shape: Shape, cand: BoolArray, k: int, d: int
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
        self, w: Workload, shape: Shape, k: int, skip_pools: set[int], skip_combos: set[int]
    ) -> int | None:
        """``_vector_pool`` for whole devices when the preference is per chip: per eligible
        chip, the first pool of the fit index at the tightest (or, to spread, loosest) fit;
        then the chip the policy prefers (ties: the tighter fit, then the lower chip)."""
        c, ok, combos = self.cluster, shape.ok, self.cluster.combos
        spread = self.policy.pack == "spread"
        fits = range(c.slots, k - 1, -1) if spread else range(k, c.slots + 1)
        prefer, rate = self.policy.prefer, shape.chip_rate

        def first(chip: int) -> tuple[int, int] | None:  # (packing key, pool)
            index = c.fit_index[chip]
            for f in fits:
                for p in index[f]:
                    if ok[p] and p not in skip_pools and combos[p] not in skip_combos:
                        return -f if spread else f, p
            return None

        chips = shape.by_rate if prefer == "throughput" else shape.chips
        if skip_combos:  # chips refused in every country they are in
            chips = [x for x in chips if not self._refused_everywhere(x, skip_combos)]
        if prefer == "throughput":  # the fastest chip with a fit, then the tightest fit
            found: tuple[float, int, int] | None = None
            for chip in chips:
                if found is not None and -rate[chip] > found[0]:
                    break
                hit = first(chip)
                if hit is not None and (found is None or (-rate[chip], hit[0]) < found[:2]):
                    found = (-rate[chip], hit[0], hit[1])
            return None if found is None else found[2]
        avail: list[tuple[int, int, int]] = []  # (chip, pool, packing key)
        for chip in chips:
            hit = first(chip)
            if hit is not None:
                avail.append((chip, hit[1], hit[0]))
        if not avail:
            return None
        if prefer == "none":
            return min(avail, key=lambda a: a[2])[1]
        best = max(rate[a[0]] for a in avail)
        factor = self.policy.domestic_factor

        def near(chip: int) -> bool:
            return c.chip_domestic[chip] and (rate[chip] * factor >= best or best <= 0)

        return min(avail, key=lambda a: (not near(a[0]), -rate[a[0]], a[2]))[1]

    def _refused_everywhere(self, chip: int, combos: set[int]) -> bool:
        """Whether every (country, chip) combo of ``chip`` in the fleet is in ``combos``."""
        c = self.cluster
        within = self._chip_combos.get(chip)
        if within is None:
            within = self._chip_combos[chip] = {
                int(x) for x in np.unique(c.pool_combo[c.pool_chip == chip])
            }
        return within <= combos

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
            uniform = c.pool_partial[p] == 0  # no shared device: one shape per free count
            buckets = c.pools.buckets[p]
            for f in range(c.slots, k - 1, -1) if pack == "spread" else range(k, c.slots + 1):
                for n in buckets[f]:
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
        self, w: Workload, shape: Shape, cand: BoolArray, notes: _Notes | None
    ) -> Placement | None:
        """A gang over the fewest nodes of one island / data center / the fleet (one chip)."""
        c, k = self.cluster, shape.k
        units, inside, clipped = self._scopes(w.topology)
        cand = cand & inside & (c.whole_total > 0)
        for sentence, combos in self.gate.known(w, 1).items():
            gone = cand & _in_combos(c, combos)
            if notes is not None:
                notes.refused[sentence] += int(c.pool_ready[gone].sum())
            cand &= ~gone
        anywhere = w.topology == "any"  # else a unit passes or fails the filters as a whole
        island = w.topology == "island"  # a pool's unit is itself: no gather
        free: IntArray | FloatArray = c.whole_total if island else c.group_whole
        while True:  # fits is within cand: none left, none fits
            if anywhere:
                free = np.bincount(units[cand], weights=c.whole_total[cand], minlength=len(units))
            fits = cand & ((free if island else free[clipped]) >= k)
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
            buckets = c.pools.buckets
            nodes = [(f, n) for p in members for f in range(c.slots, 0, -1) for n in buckets[p][f]]
            if self.reserved:
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

    def _scopes(self, topology: str) -> tuple[IntArray, BoolArray, IntArray]:
        """Per pool: its gang scope unit (``ClusterView.scope_units``), whether it has one,
        and the unit or 0."""
        found = self._units.get(topology)
        if found is None:
            units = self.cluster.scope_units(topology)
            found = self._units[topology] = (units, units >= 0, np.maximum(units, 0))
        return found

    def _replicas(
        self, w: Workload, shape: Shape, cand: BoolArray, notes: _Notes | None
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

    # --- explanation ----------------------------------------------------------------------

    def _explain(
        self, w: Workload, shape: Shape, notes: _Notes, placement: Placement | None
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
