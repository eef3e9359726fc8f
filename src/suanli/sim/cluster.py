"""A discrete-event simulator of a fleet at node level, driving the platform's own placement
``Scheduler`` (``suanli.scheduler.placement``).

**Events** are arrivals and completions. Events are batched: a scheduling round runs at
the first event time that is at least ``interval_s`` after the previous round (every
completion and arrival up to that moment is taken in first; a completion frees its devices
at its own time, but the scheduler sees them at the round). A round calls
``Scheduler.schedule_round`` with ``explain=False`` on the queue:

* after a completion or a preemption (something was freed): the first ``window`` jobs of
  the queue in the scheduler's order (high before spot, then first come first served;
  100 by default), as Slurm's backfill tests at most ``bf_max_job_test`` jobs;
* after arrivals alone (nothing freed since the last round): the head of the queue and the
  new jobs only. The other queued jobs did not fit at the last round and less is free now,
  so retrying them cannot place them; the head keeps its EASY reservation, so the new jobs
  backfill around it as they would in a full round.

A round that placed work but did not offer every queued job is followed by another one an
interval later, event or not.

Jobs that cannot fit in what is free in the whole fleet (more whole devices than are free,
or a larger share than any device has free) are not offered at all; for high priority
work the devices running spot work count as free (it could preempt them).

A job that could not start even on the empty fleet (its chip, memory, topology or
compliance rule out every node) is never queued; its reason is kept.

**Run time.** A job's ``runtime_s`` is its run time on the *reference chip*
(``SimConfig.reference_chip``). Training and fine-tuning scale with the chip they land on:
``runtime x rate(reference) / rate(chip)``, rates from the perf model for the job's kind,
model and precision (16-bit figures when bf16 is missing); where either rate is unknown
the job takes its runtime unchanged. Inference deployments and rentals hold their devices
for ``runtime_s`` whatever the chip (``SimJob.scales`` overrides).

**Preemption.** A spot job the scheduler preempts goes back to the queue with its original
submission time. With ``keep_progress`` (the default: the job checkpoints) it keeps the
work done so far and needs only the rest; without, it starts over.

**Compliance, checked independently.** Every placement the scheduler returns is checked
again here, without the scheduler's caches: the nodes must exist, be of the chip the
placement names and hold the devices; the job's chip constraint must accept the chip; and
``suanli.policy.evaluate.evaluate_placement`` (residency, export control, quotas) must allow
each data center's part, given what the tenant holds at that moment. Each failure is a
violation, kept with its sentence; there should be none.
"""

from __future__ import annotations

import bisect
import heapq
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from suanli.catalog.chips import load_catalog
from suanli.perf.model import PerfModel
from suanli.policy.evaluate import evaluate_placement
from suanli.policy.rules import RuleSet, default_rules
from suanli.policy.snapshot import (
    FleetSnapshot,
    PlacementView,
    Residency,
    WorkloadView,
)
from suanli.scheduler.gate import catalog_class_of
from suanli.scheduler.placement import THROUGHPUT, Policy, RoundResult, Scheduler
from suanli.scheduler.workload import WHOLE, ClusterView, NodeView, Placement, Workload
from suanli.sim.assumptions import DEFAULT_ASSUMPTIONS, Assumption, perf_model
from suanli.sim.checker import ComplianceChecker, Violation

__all__ = [
    "ComplianceChecker",
    "JobRecord",
    "Segment",
    "SimConfig",
    "SimJob",
    "SimRun",
    "Violation",
    "simulate",
]

SCALING_KINDS = frozenset({"training", "finetune"})
_NEVER = "never offered a place"
EXPLAIN_AT_END = 2000  # jobs left in the queue whose waiting the scheduler explains


@dataclass(frozen=True, slots=True)
class SimJob:
    """A workload to replay: it arrives at ``workload.submitted_at`` and runs for
    ``workload.runtime_s`` on the reference chip. ``scales``: whether that time scales with
    the chip's speed (``None``: training and fine-tuning do, the other kinds do not)."""

    workload: Workload
    scales: bool | None = None

    @property
    def scaling(self) -> bool:
        return self.workload.kind in SCALING_KINDS if self.scales is None else self.scales


@dataclass(frozen=True)
class SimConfig:
    policy: Policy = THROUGHPUT
    interval_s: float = 60.0
    reference_chip: str = "H100 SXM"
    window: int = 100
    keep_progress: bool = True
    rules: RuleSet | None = None  # None: the packaged default rules
    assumptions: tuple[Assumption, ...] = DEFAULT_ASSUMPTIONS


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a job on one placement: devices = accelerators x share of each."""

    job: str
    start: float
    end: float
    chip: str
    data_centers: tuple[tuple[str, int], ...]
    devices: float
    domestic: bool
    spot: bool
    preempted: bool


@dataclass
class JobRecord:
    id: str
    tenant: str
    kind: str
    priority: str
    accelerators: int
    gpu_milli: int
    arrival: float
    runtime_s: float  # on the reference chip
    ideal_s: float | None  # alone, without queueing, on the fastest chip it may use
    start: float | None = None
    finish: float | None = None
    chips: list[str] = field(default_factory=list)
    data_centers: list[str] = field(default_factory=list)
    preemptions: int = 0
    reason: str = ""  # why it never started (empty when it did)

    @property
    def jct(self) -> float | None:
        return None if self.finish is None else self.finish - self.arrival

    @property
    def queueing(self) -> float | None:
        return None if self.start is None else self.start - self.arrival


@dataclass
class SimRun:
    """Everything a report needs about one simulation."""

    jobs: list[JobRecord]
    segments: list[Segment]
    violations: list[Violation]
    round_times: list[float]  # seconds of wall time per scheduling round
    queue: list[tuple[float, int]]  # (sim time, queued jobs) after each round
    capacity: dict[str, int]  # accelerators per chip (ready nodes)
    capacity_by_place: dict[tuple[str, str], int]  # per (data center, chip)
    domestic_chips: frozenset[str]
    costs: dict[tuple[str, str], tuple[int, str]]  # (dc, chip) -> (micros/h, currency)
    policy: str
    reference_chip: str
    assumptions: tuple[Assumption, ...]
    wall_s: float
    start: float
    end: float
    dropped: dict[str, int] = field(default_factory=dict)  # why jobs were left out
    label: str = ""


# --- the simulation ------------------------------------------------------------------------


@dataclass
class _Active:
    job: SimJob
    workload: Workload  # as queued now (runtime_s: what is left, on the reference chip)
    left_s: float  # reference-chip seconds of work left
    run_start: float = 0.0
    factor: float = 1.0  # wall seconds per reference second on the current placement
    placement: Placement | None = None
    token: int = 0


class _Queue:
    """Queued workloads in the scheduler's order, with lazy deletion."""

    def __init__(self) -> None:
        self.order: list[tuple[bool, float, str]] = []
        self.items: dict[str, Workload] = {}
        self.dead = 0

    def add(self, w: Workload) -> None:
        self.items[w.id] = w
        bisect.insort(self.order, (w.priority != "high", w.submitted_at, w.id))

    def remove(self, wid: str) -> None:
        if self.items.pop(wid, None) is not None:
            self.dead += 1
            if self.dead > 64 and self.dead > len(self.order) // 2:
                self.order = [k for k in self.order if k[2] in self.items]
                self.dead = 0

    def first(self, count: int) -> list[Workload]:
        out: list[Workload] = []
        seen: set[str] = set()  # a requeued job may have a stale key besides its new one
        for key in self.order:
            w = self.items.get(key[2])
            if w is not None and key[2] not in seen:
                seen.add(key[2])
                out.append(w)
                if len(out) >= count:
                    break
        return out

    def __len__(self) -> int:
        return len(self.items)


class _Rates:
    """Perf-model rates per (kind, model, precision, chip), with 16-bit fallback."""

    def __init__(self, perf: PerfModel) -> None:
        self.perf = perf
        self._cache: dict[tuple[str, str | None, str, str], float | None] = {}

    def rate(self, w: Workload, chip: str) -> float | None:
        key = (w.kind, w.model_id, w.precision, chip)
        if key not in self._cache:
            est = self.perf.throughput(w.kind, w.model_id, chip, w.precision)
            rate = est.rate
            if rate is None and w.precision == "bf16":
                rate = self.perf.throughput(w.kind, w.model_id, chip, "fp16").rate
            self._cache[key] = rate if rate else None
        return self._cache[key]

    def factor(self, w: Workload, chip: str, reference: str) -> float:
        mine, ref = self.rate(w, chip), self.rate(w, reference)
        return 1.0 if mine is None or ref is None else ref / mine


SchedulerFactory = Callable[[ClusterView, RuleSet, FleetSnapshot, Policy, PerfModel], Scheduler]


def _default_factory(
    cluster: ClusterView, rules: RuleSet, snapshot: FleetSnapshot, policy: Policy, perf: PerfModel
) -> Scheduler:
    return Scheduler(cluster, rules, snapshot, policy, perf=perf)


def _release(scheduler: Scheduler, wid: str) -> None:
    """Free what ``wid`` holds, in the cluster and in the scheduler's compliance holdings."""
    run = scheduler.cluster.release(wid)
    for dc, n in run.placement.parts:
        scheduler.gate.hold(run.workload.tenant.name, dc, run.placement.chip, -n)


def simulate(
    jobs: Sequence[SimJob],
    nodes: Sequence[NodeView],
    snapshot: FleetSnapshot,
    config: SimConfig = SimConfig(),
    *,
    progress: Callable[[float, int, int], None] | None = None,
    scheduler_factory: SchedulerFactory = _default_factory,
    label: str = "",
) -> SimRun:
    """Replay ``jobs`` on ``nodes``; ``progress(sim time, jobs done, jobs)`` after rounds."""
    started = time.perf_counter()
    rules = config.rules if config.rules is not None else default_rules()
    perf = perf_model(config.assumptions)
    rates = _Rates(perf)
    cluster = ClusterView(nodes)
    scheduler = scheduler_factory(cluster, rules, snapshot, config.policy, perf)
    checker = ComplianceChecker(nodes, snapshot.data_centers, rules)
    node_of = {n.name: n for n in nodes}
    ready = [n for n in nodes if n.state == "ready"]
    capacity = Counter[str]()
    for n in ready:
        capacity[n.chip] += n.accelerators
    fastest = _Fastest(ready, snapshot, rules, rates, config.reference_chip)
    probe = _Probe(Scheduler(ClusterView(nodes), rules, snapshot, config.policy, perf=perf))

    order = sorted(jobs, key=lambda j: (j.workload.submitted_at, j.workload.id))
    ids = [j.workload.id for j in order]
    if len(set(ids)) != len(ids):
        raise ValueError("job ids must be unique")
    records: dict[str, JobRecord] = {}
    for j in order:
        w = j.workload
        runtime = float(w.runtime_s or 0.0)
        records[w.id] = JobRecord(
            w.id, w.tenant.name, w.kind, w.priority, w.accelerators, w.gpu_milli,
            w.submitted_at, runtime, fastest.ideal(j),
        )  # fmt: skip
    active: dict[str, _Active] = {}
    queue = _Queue()
    ends: list[tuple[float, int, str]] = []
    segments: list[Segment] = []
    violations: list[Violation] = []
    round_times: list[float] = []
    queue_len: list[tuple[float, int]] = []
    spot_running: dict[str, int] = {}  # spot job -> devices it holds
    token = 0
    done = 0
    i = 0
    total = len(order)
    last_round = -math.inf
    freed = True
    t0 = order[0].workload.submitted_at if order else 0.0
    now = t0

    def finish_segment(a: _Active, end: float, preempted: bool) -> None:
        p = a.placement
        assert p is not None
        spec_domestic = node_of[p.slots[0].node].domestic
        devices = p.count * (a.workload.gpu_milli / WHOLE)
        segments.append(
            Segment(a.job.workload.id, a.run_start, end, p.chip, p.parts, devices,
                    spec_domestic, a.workload.priority == "spot", preempted)
        )  # fmt: skip

    retry = False  # a round placed work and left queued jobs it did not offer
    while i < total or ends or retry:
        nxt = last_round + config.interval_s if retry else math.inf
        if i < total:
            nxt = min(nxt, order[i].workload.submitted_at)
        if ends:
            nxt = min(nxt, ends[0][0])
        now = max(nxt, last_round + config.interval_s)
        while ends and ends[0][0] <= now:
            end, tok, wid = heapq.heappop(ends)
            a = active.get(wid)
            if a is None or a.token != tok:
                continue  # preempted meanwhile
            _release(scheduler, wid)
            assert a.placement is not None
            checker.hold(a.workload, a.placement, -1)
            finish_segment(a, end, False)
            records[wid].finish = end
            spot_running.pop(wid, None)
            del active[wid]
            done += 1
            freed = True
        new: list[Workload] = []
        while i < total and order[i].workload.submitted_at <= now:
            job = order[i]
            i += 1
            w = job.workload
            if w.runtime_s is None or w.runtime_s <= 0:
                records[w.id].reason = "no run time"
                done += 1
                continue
            never = probe.never(w)
            if never is not None:
                records[w.id].reason = never
                done += 1
                continue
            active[w.id] = _Active(job, w, float(w.runtime_s))
            queue.add(w)
            new.append(w)
        if not len(queue):
            retry = False
            continue
        if freed or retry:
            offered = queue.first(config.window)
            unseen = len(queue) > len(offered)
        else:
            offered = queue.first(1)
            unseen = False
            offered += [w for w in new if w.id != offered[0].id and w.id in queue.items]
        # the head of the queue is always offered, fit or not: blocked, it gets the EASY
        # reservation that keeps smaller jobs from starving it (as the live loop does)
        head = offered[0]
        offered = _could_fit(offered, cluster, sum(spot_running.values()))
        if not offered or offered[0] is not head:
            offered.insert(0, head)
        freed = retry = False
        if offered:
            tick = time.perf_counter()
            result: RoundResult = scheduler.schedule_round(offered, now=now, explain=False)
            round_times.append(time.perf_counter() - tick)
            for pre in result.preempted:
                a = active[pre.victim]
                elapsed = now - a.run_start
                finish_segment(a, now, True)
                checker.hold(a.workload, pre.placement, -1)
                spot_running.pop(pre.victim, None)
                left = a.left_s - elapsed / a.factor if config.keep_progress else a.left_s
                a.left_s = max(left, 1e-6)
                a.workload = replace(a.workload, runtime_s=a.left_s)
                a.placement = None
                a.token = -1
                records[pre.victim].preemptions += 1
                queue.add(a.workload)
                freed = True
            retry = unseen and bool(result.placed)
            for p in result.placed:
                a = active[p.workload]
                w = a.workload
                queue.remove(w.id)
                for rule, sentence in checker.check(w, p):
                    violations.append(Violation(now, w.id, rule, sentence))
                checker.hold(w, p, 1)
                token += 1
                a.token, a.placement, a.run_start = token, p, now
                a.factor = rates.factor(w, p.chip, config.reference_chip) if a.job.scaling else 1.0
                heapq.heappush(ends, (now + a.left_s * a.factor, token, w.id))
                rec = records[w.id]
                if rec.start is None:
                    rec.start = now
                if p.chip not in rec.chips:
                    rec.chips.append(p.chip)
                for dc, _ in p.parts:
                    if dc not in rec.data_centers:
                        rec.data_centers.append(dc)
                if w.priority == "spot":
                    spot_running[w.id] = p.count
        last_round = now
        queue_len.append((now, len(queue)))
        if progress is not None:
            progress(now - t0, done, total)
    # what never ran: ask the scheduler why, once
    if len(queue):
        for k, w in enumerate(queue.first(len(queue))):
            if k >= EXPLAIN_AT_END:
                records[w.id].reason = "still queued at the end"
                continue
            decision = scheduler.place(w)
            records[w.id].reason = decision.explanation.outcome or _NEVER
    if progress is not None:
        progress(now - t0, done, total)
    end_time = max((s.end for s in segments), default=now)
    return SimRun(
        jobs=list(records.values()),
        segments=segments,
        violations=violations,
        round_times=round_times,
        queue=queue_len,
        capacity=dict(capacity),
        capacity_by_place=dict(_places(ready)),
        domestic_chips=frozenset(n.chip for n in ready if n.domestic),
        costs={
            (name, chip): cost
            for name, dc in snapshot.data_centers.items()
            for chip, cost in dc.costs.items()
        },
        policy=config.policy.name,
        reference_chip=config.reference_chip,
        assumptions=config.assumptions,
        wall_s=time.perf_counter() - started,
        start=t0,
        end=end_time,
        label=label,
    )


def _places(nodes: Sequence[NodeView]) -> Counter[tuple[str, str]]:
    out = Counter[tuple[str, str]]()
    for n in nodes:
        out[(n.data_center, n.chip)] += n.accelerators
    return out


def _could_fit(offered: list[Workload], cluster: ClusterView, spot: int) -> list[Workload]:
    """Drop jobs that cannot fit in what the whole fleet has free, counting for high
    priority work the ``spot`` devices it could preempt."""
    whole = int(cluster.whole_total.sum())
    share = int(cluster.maxfree.max()) if len(cluster.maxfree) else 0
    out = []
    for w in offered:
        extra = spot if w.priority == "high" else 0
        if w.gpu_milli < WHOLE:
            if share >= w.gpu_milli or extra:
                out.append(w)
        elif (w.accelerators if w.gang else 1) <= whole + extra:
            out.append(w)
    return out


class _Probe:
    """Whether a job could ever start: placed on the empty fleet, holding nothing. Jobs that
    could not are never queued (they would hold the head of the queue forever)."""

    def __init__(self, empty: Scheduler) -> None:
        self.empty = empty
        self._cache: dict[tuple[object, ...], str | None] = {}

    def never(self, w: Workload) -> str | None:
        """Why ``w`` can never start, or ``None`` when it fits an empty fleet."""
        key: tuple[object, ...] = (w.tenant, w.kind, w.model_id, w.precision, w.accelerators)
        key += (w.gpu_milli, w.gang, w.topology, w.chips, w.residency, w.residency_sources)
        if key not in self._cache:
            decision = self.empty.place(w)
            why = None
            if decision.placement is None:
                why = "never fits: " + (decision.explanation.outcome or "no place")
            self._cache[key] = why
        return self._cache[key]


class _Fastest:
    """A job's time alone on the fastest chip it may use (chip constraint, residency and the
    compliance engine with nothing held), for finish-time fairness."""

    def __init__(
        self,
        nodes: Sequence[NodeView],
        snapshot: FleetSnapshot,
        rules: RuleSet,
        rates: _Rates,
        reference: str,
    ) -> None:
        self.places = sorted({(n.data_center, n.chip) for n in nodes})
        self.size: dict[tuple[str, str], int] = Counter()
        for n in nodes:
            self.size[(n.data_center, n.chip)] += n.accelerators
        self.snapshot, self.rules, self.rates, self.reference = snapshot, rules, rates, reference
        self.catalog = load_catalog()
        self._cache: dict[tuple[object, ...], float | None] = {}

    def ideal(self, job: SimJob) -> float | None:
        w = job.workload
        if not w.runtime_s:
            return None
        key: tuple[object, ...] = (w.tenant, w.residency, w.chips, w.kind, w.model_id)
        key += (w.precision, w.accelerators, w.gang)
        if key not in self._cache:
            self._cache[key] = self._best_factor(w)
        factor = self._cache[key]
        if factor is None:
            return None
        return w.runtime_s * (factor if job.scaling else 1.0)

    def _best_factor(self, w: Workload) -> float | None:
        view = WorkloadView(w.tenant, w.id, w.kind, Residency(w.residency, w.residency_sources))
        best: float | None = None
        for dc, chip in self.places:
            if self.size[(dc, chip)] < (w.accelerators if w.gang else 1):
                continue
            spec = self.catalog.find(chip)
            stack = spec.software_stack if spec else None
            memory = float(spec.memory_gb) if spec and spec.memory_gb else None
            if w.chips.refusal(chip, stack, memory) is not None:
                continue
            place = PlacementView(dc, chip, min(w.accelerators, self.size[(dc, chip)]))
            verdict = evaluate_placement(view, place, self.snapshot, self.rules, catalog_class_of)
            if not verdict.allowed:
                continue
            f = self.rates.factor(w, chip, self.reference)
            best = f if best is None else min(best, f)
        return best
