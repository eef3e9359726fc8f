"""A round-based discrete-event simulator of a mixed GPU fleet, after Gavel's.

Time advances in rounds (6 minutes by default). At the start of a round, jobs that arrived
are admitted; when jobs arrived or left and the policy's reset interval has passed, the
policy computes a new allocation ``X`` and the time each job received is reset. Then the
mechanism, as Gavel's, ranks every (job, chip type) pair by ``X / fraction of the chip
type's time the job received since the reset`` (ties: accumulated deficit, then ``X``),
walks the ranking chip type by chip type, and gives each job that fits ``scale_factor``
whole GPUs of one type for the round. A job runs at its measured throughput on that type
until the round ends or its steps run out; the round ends when the last job of the round
stops. Jobs that arrive mid-round wait for the next one.

The output holds, per job, the first start, the finish and the chip types it ran on.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from suanli.scheduler.rounds import RoundPolicy, RoundState

__all__ = ["JctSummary", "SimConfig", "SimJob", "SimResult", "Workload", "simulate"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_EPS_STEPS = 1e-6
_NEW_JOB = 1e9  # Gavel's priority for a job that has not run since the reset


@dataclass(frozen=True, slots=True)
class SimJob:
    """One job: ``throughput`` maps chip type to steps/s of the whole job (0: cannot run)."""

    job_id: int
    arrival: float
    job_type: str
    scale_factor: int
    total_steps: float
    throughput: Mapping[str, float]


@dataclass(frozen=True)
class Workload:
    """Jobs as arrays, sorted by arrival; row ``i`` of each array is job ``job_ids[i]``."""

    chips: tuple[str, ...]
    job_ids: IntArray
    arrival: FloatArray
    job_type: tuple[str, ...]
    scale_factor: IntArray
    total_steps: FloatArray
    throughput: FloatArray

    @property
    def size(self) -> int:
        return int(self.job_ids.shape[0])

    @staticmethod
    def from_arrays(
        chips: Sequence[str],
        arrival: npt.ArrayLike,
        job_type: Sequence[str],
        scale_factor: npt.ArrayLike,
        total_steps: npt.ArrayLike,
        throughput: npt.ArrayLike,
        job_ids: npt.ArrayLike | None = None,
    ) -> Workload:
        arr = np.asarray(arrival, dtype=np.float64)
        n = arr.shape[0]
        sf = np.asarray(scale_factor, dtype=np.int64)
        steps = np.asarray(total_steps, dtype=np.float64)
        thr = np.asarray(throughput, dtype=np.float64).reshape(n, len(chips))
        ids = np.arange(n, dtype=np.int64) if job_ids is None else np.asarray(job_ids, np.int64)
        if len(job_type) != n or sf.shape != (n,) or steps.shape != (n,) or ids.shape != (n,):
            raise ValueError("every per-job array must have one entry per job")
        if not (np.all(np.isfinite(arr)) and np.all(np.isfinite(steps))):
            raise ValueError("arrival times and steps must be finite")
        if np.any(sf < 1) or np.any(steps <= 0) or np.any(thr < 0):
            raise ValueError("scale factors must be >= 1, steps > 0, throughputs >= 0")
        if len(set(ids.tolist())) != n:
            raise ValueError("job ids must be unique")
        order = np.argsort(arr, kind="stable")
        return Workload(
            chips=tuple(chips),
            job_ids=ids[order],
            arrival=arr[order],
            job_type=tuple(job_type[i] for i in order),
            scale_factor=sf[order],
            total_steps=steps[order],
            throughput=thr[order],
        )

    @staticmethod
    def from_jobs(jobs: Sequence[SimJob], chips: Sequence[str]) -> Workload:
        return Workload.from_arrays(
            chips,
            [j.arrival for j in jobs],
            [j.job_type for j in jobs],
            [j.scale_factor for j in jobs],
            [j.total_steps for j in jobs],
            [[j.throughput.get(c, 0.0) for c in chips] for j in jobs],
            [j.job_id for j in jobs],
        )

    def lower_bound(self) -> FloatArray:
        """Each job's completion time alone on its fastest chip type, without queueing."""
        best = self.throughput.max(axis=1)
        lb: FloatArray = self.total_steps / np.where(best > 0, best, np.nan)
        return lb

    def classes(self) -> IntArray:
        keys = {
            key: i
            for i, key in enumerate(
                sorted(set(zip(self.job_type, self.scale_factor.tolist(), strict=True)))
            )
        }
        return np.array(
            [keys[key] for key in zip(self.job_type, self.scale_factor.tolist(), strict=True)],
            dtype=np.int64,
        )


@dataclass(frozen=True)
class SimConfig:
    """Simulation settings.

    ``until`` lists rows of the workload (sorted by arrival) that must finish before the run
    stops, new jobs arriving meanwhile; ``None``: every job. ``global_queue`` ranks all
    (job, chip type) pairs in one queue (Gavel's ``enable_global_queue``); ``False`` gives
    Gavel's default, one ranking per chip type visited in turn. ``progress`` is called with
    the share of those jobs finished."""

    round_length: float = 360.0
    seed: int = 0
    until: Sequence[int] | None = None
    max_time: float = math.inf
    global_queue: bool = True
    progress: Callable[[float], None] | None = None


@dataclass(frozen=True)
class JctSummary:
    count: int
    mean: float
    median: float
    p99: float
    lower_bound_mean: float

    @property
    def vs_lower_bound(self) -> float:
        return self.mean / self.lower_bound_mean if self.lower_bound_mean > 0 else math.nan


@dataclass(frozen=True)
class SimResult:
    """Per-job outcome (rows as in the workload; ``nan`` where a job did not start/finish)."""

    workload: Workload
    policy: str
    fleet: Mapping[str, int]
    start: FloatArray
    finish: FloatArray
    chip_mask: IntArray
    busy_gpu_seconds: FloatArray
    end_time: float
    rounds: int
    allocations: int
    allocation_seconds: float
    wall_seconds: float

    def jct(self) -> FloatArray:
        jct: FloatArray = self.finish - self.workload.arrival
        return jct

    def chips_used(self, row: int) -> tuple[str, ...]:
        mask = int(self.chip_mask[row])
        return tuple(c for j, c in enumerate(self.workload.chips) if mask >> j & 1)

    def summary(self, rows: Sequence[int] | None = None) -> JctSummary:
        """JCT statistics over ``rows`` (default: every finished job)."""
        jct = self.jct()
        lb = self.workload.lower_bound()
        idx = np.flatnonzero(np.isfinite(jct)) if rows is None else np.asarray(rows, np.int64)
        values = jct[idx]
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError("some of the requested jobs did not finish")
        return JctSummary(
            count=int(values.size),
            mean=float(values.mean()),
            median=float(np.median(values)),
            p99=float(np.percentile(values, 99)),
            lower_bound_mean=float(lb[idx].mean()),
        )

    def makespan(self) -> float:
        done = np.isfinite(self.finish)
        if not done.any():
            return math.nan
        return float(self.finish[done].max() - self.workload.arrival.min())

    def utilization(self) -> dict[str, float]:
        """Busy GPU-seconds / (GPUs x simulated time), per chip type."""
        span = self.end_time - float(self.workload.arrival.min()) if self.workload.size else 0.0
        out: dict[str, float] = {}
        for j, chip in enumerate(self.workload.chips):
            gpus = self.fleet.get(chip, 0)
            out[chip] = float(self.busy_gpu_seconds[j]) / (gpus * span) if gpus and span else 0.0
        return out

    def job_lines(self) -> list[tuple[int, float, float, float, str]]:
        """``(job id, arrival, start, finish, chip types used joined by '+')`` per job."""
        return [
            (
                int(self.workload.job_ids[i]),
                float(self.workload.arrival[i]),
                float(self.start[i]),
                float(self.finish[i]),
                "+".join(self.chips_used(i)),
            )
            for i in range(self.workload.size)
        ]


def _global_ranking(
    prio: FloatArray, deficit: FloatArray, x: FloatArray, chip_order: Sequence[int]
) -> list[tuple[int, int]]:
    """All (job row, chip) pairs, best first: priority, then deficit, then allocation."""
    cols = np.asarray(chip_order, dtype=np.int64)
    p, d, a = prio[:, cols].T.ravel(), deficit[:, cols].T.ravel(), x[:, cols].T.ravel()
    flat = np.lexsort((-a, -d, -p))
    n = prio.shape[0]
    rows = (flat % n).tolist()
    chips = cols[flat // n].tolist()
    return list(zip(rows, chips, strict=True))


def _assign(
    queues: Sequence[Sequence[tuple[int, int]]],
    free: list[int],
    scale_factor: Sequence[int],
    runnable: Sequence[Sequence[bool]],
    allocated: Sequence[Sequence[bool]] | None,
) -> list[int]:
    """Walk the rankings; give each job that fits ``scale_factor`` GPUs of one chip type.

    Returns the chip type per job row (-1: not scheduled this round). With ``allocated``,
    only pairs with a positive priority may run (Gavel's FIFO)."""
    chosen = [-1] * len(scale_factor)
    total = sum(free)
    for queue in queues:
        for r, j in queue:
            if total <= 0:
                return chosen
            room = free[j]
            if room <= 0 or chosen[r] >= 0 or not runnable[r][j]:
                continue
            if allocated is not None and not allocated[r][j]:
                continue
            need = scale_factor[r]
            if need > room:
                continue
            free[j] = room - need
            total -= need
            chosen[r] = j
    return chosen


def _check_fits(workload: Workload, capacity: IntArray) -> None:
    fits = (workload.throughput > 0) & (workload.scale_factor[:, None] <= capacity[None, :])
    bad = np.flatnonzero(~fits.any(axis=1))
    if bad.size:
        job = int(workload.job_ids[bad[0]])
        raise ValueError(f"{bad.size} job(s) fit on no chip type of the fleet, e.g. job {job}")


def simulate(
    workload: Workload,
    fleet: Mapping[str, int],
    policy: RoundPolicy,
    config: SimConfig | None = None,
) -> SimResult:
    """Run ``workload`` on ``fleet`` (GPUs per chip type) under ``policy``."""
    cfg = config or SimConfig()
    if cfg.round_length <= 0:
        raise ValueError("round_length must be > 0")
    chips = workload.chips
    k = len(chips)
    capacity = np.array([int(fleet.get(c, 0)) for c in chips], dtype=np.int64)
    _check_fits(workload, capacity)
    n_total = workload.size
    round_len = cfg.round_length
    thr_all = workload.throughput
    sf_all = workload.scale_factor
    classes = workload.classes()
    rng = random.Random(cfg.seed)

    done_steps = np.zeros(n_total)
    attained = np.zeros(n_total)
    time_so_far = np.zeros((n_total, k))
    deficit = np.zeros((n_total, k))
    alloc = np.zeros((n_total, k))
    start = np.full(n_total, np.nan)
    finish = np.full(n_total, np.nan)
    chip_mask = np.zeros(n_total, dtype=np.int64)
    busy = np.zeros(k)
    worker_time = np.zeros(k)

    pending = set(range(n_total)) if cfg.until is None else {int(r) for r in cfg.until}
    target = max(len(pending), 1)
    next_arrival = 0
    active: list[int] = []
    act = np.zeros(0, dtype=np.int64)
    changed = False
    last_reset = -math.inf
    allocations = 0
    alloc_seconds = 0.0
    rounds = 0
    now = float(workload.arrival[0]) if n_total else 0.0
    wall0 = time.perf_counter()
    last_progress = -1.0

    while pending and now <= cfg.max_time:
        while next_arrival < n_total and workload.arrival[next_arrival] <= now:
            active.append(next_arrival)
            time_so_far[next_arrival] = round_len / 2.0
            next_arrival += 1
            changed = True
        if not active:
            if next_arrival >= n_total:
                break
            now = float(workload.arrival[next_arrival])
            continue
        if changed:
            act = np.asarray(active, dtype=np.int64)
        if changed and (now - last_reset >= policy.reset_interval or last_reset < 0):
            # Gavel's reset: deficits carry what each job was owed, time counters restart
            if last_reset > -math.inf:
                elapsed = now - last_reset
                deficit[act] += alloc[act] * elapsed - (time_so_far[act] - round_len / 2.0)
            time_so_far[act] = round_len / 2.0
            worker_time[:] = act.size * round_len / 2.0
            state = RoundState(
                chips=chips,
                capacity=capacity,
                job_ids=workload.job_ids[act],
                throughput=thr_all[act],
                scale_factor=sf_all[act],
                remaining_steps=workload.total_steps[act] - done_steps[act],
                attained=attained[act],
                arrival=workload.arrival[act],
                job_class=classes[act],
                now=now,
            )
            t0 = time.perf_counter()
            x = policy.allocate(state)
            alloc_seconds += time.perf_counter() - t0
            allocations += 1
            alloc[act] = x
            last_reset = now
            changed = False

        x = alloc[act]
        thr = thr_all[act]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(worker_time > 0, time_so_far[act] / worker_time, 0.0)
            prio = np.where(frac > 0, x / frac, x * _NEW_JOB)
        prio[(x <= 0) | (thr <= 0)] = 0.0
        dfc = deficit[act]
        n = act.size
        order_chips = list(range(k))
        if policy.shuffle_chip_order:
            rng.shuffle(order_chips)
        if cfg.global_queue:
            queues = [_global_ranking(prio, dfc, x, order_chips)]
        else:  # Gavel's default: one ranking per chip type, chip types one after another
            queues = [
                [(r, j) for r in np.lexsort((-x[:, j], -dfc[:, j], -prio[:, j])).tolist()]
                for j in order_chips
            ]
        chosen_list = _assign(
            queues,
            capacity.tolist(),
            sf_all[act].tolist(),
            (thr > 0).tolist(),
            None if policy.work_conserving else (prio > 0).tolist(),
        )
        chosen = np.asarray(chosen_list, dtype=np.int64).reshape(n)

        rounds += 1
        ran = np.flatnonzero(chosen >= 0)
        if ran.size == 0:
            upcoming = float(workload.arrival[next_arrival]) if next_arrival < n_total else math.inf
            now = min(now + round_len, upcoming) if policy.work_conserving else now + round_len
            continue
        rows = act[ran]
        cj = chosen[ran]
        rate = thr[ran, cj]
        remaining = workload.total_steps[rows] - done_steps[rows]
        steps = np.minimum(rate * round_len, remaining)
        ran_for = steps / rate
        done_steps[rows] += steps
        attained[rows] += ran_for
        time_so_far[rows, cj] += ran_for
        np.add.at(worker_time, cj, ran_for)
        np.add.at(busy, cj, ran_for * sf_all[rows])
        chip_mask[rows] |= np.left_shift(1, cj)
        fresh = np.isnan(start[rows])
        start[rows[fresh]] = now
        over = workload.total_steps[rows] - done_steps[rows] <= _EPS_STEPS * np.maximum(
            1.0, workload.total_steps[rows]
        )
        if over.any():
            gone = rows[over]
            finish[gone] = now + ran_for[over]
            gone_set = set(gone.tolist())
            active = [r for r in active if r not in gone_set]
            pending -= gone_set
            changed = True
        now = now + float(ran_for.max())
        if cfg.progress is not None:
            share = 1.0 - len(pending) / target
            if share - last_progress >= 0.01 or not pending:
                cfg.progress(share)
                last_progress = share

    return SimResult(
        workload=workload,
        policy=policy.name,
        fleet=dict(fleet),
        start=start,
        finish=finish,
        chip_mask=chip_mask,
        busy_gpu_seconds=busy,
        end_time=now,
        rounds=rounds,
        allocations=allocations,
        allocation_seconds=alloc_seconds,
        wall_seconds=time.perf_counter() - wall0,
    )
