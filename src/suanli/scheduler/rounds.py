"""Round-based allocation policies over a fleet of several chip types (after Gavel).

A policy looks at the jobs in the system and returns an allocation ``X``: ``X[i, j]`` is
the share of time job ``i`` should spend on ``scale_factor[i]`` GPUs of chip type ``j``.
A round-based mechanism (see ``suanli.sim.rounds``) turns ``X`` into whole-GPU
assignments each round.

Policies (``make_policy(name)``):

``fifo``
    Gavel's FIFO: jobs in arrival order each get a whole chip type (picked at random among
    those with room) until one does not fit; a job keeps its chip type until it finishes.
    Heterogeneity-agnostic; the mechanism runs only allocated jobs.
``las``
    Least attained service as Gavel defines its baseline: max-min fairness with every chip
    type treated as equally fast (Gavel's ``max_min_fairness``). Solved in closed form by
    water-filling; each job's share is spread over chip types in proportion to their size.
``max_min_fairness_perf``
    Gavel's heterogeneity-aware max-min fairness over normalised effective throughput, an
    LP (``suanli.scheduler.lp.max_min_lp``) over classes of interchangeable jobs.
``max_normalized_throughput_perf``
    Ours, aimed at average job completion time (JCT): maximise ``sum_i r_i`` with
    ``r_i = sum_j X[i, j] * throughput[i, j] / max_j throughput[i, j]``, the speed of job
    ``i`` relative to its fastest chip type. While it runs at relative speed ``r`` a job's
    completion slips by ``1 - r`` seconds a second, and every job weighs the same in the
    mean, so this LP hands each round to the jobs that lose the least on each chip type:
    every job lands where it is *relatively* fastest, and the contested fast chips go to
    the jobs that gain most from them. It reads no job sizes (non-clairvoyant), as LAS.
    Optional weights (scale factor, remaining time, attained service) and a fairness floor
    are parameters.
``srpt_perf``
    Ours, clairvoyant, kept for comparison: the same LP with each job weighted by
    ``1 / remaining time`` (shortest remaining time first, heterogeneity-aware). It reads
    each job's remaining steps, as Gavel's finish-time-fairness policy does.

The max-min policies normalise as Gavel's code does: a job's effective throughput is divided
by its throughput under the *isolated* allocation (the fleet split evenly, ``1/scale_factor``
of a share each) and multiplied by its scale factor, so a job on ``s`` GPUs weighs ``s**2``
times its time share. A ``fairness`` floor, where a policy has one, keeps every job at that
fraction of its max-min fair value.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from suanli.scheduler.lp import max_min_lp, max_weighted_lp

__all__ = [
    "POLICY_NAMES",
    "FifoPolicy",
    "LasPolicy",
    "MaxMinFairnessPerfPolicy",
    "NormalizedThroughputPolicy",
    "RoundPolicy",
    "RoundState",
    "SrptPerfPolicy",
    "allocation_violations",
    "isolated_coefficients",
    "make_policy",
    "water_fill",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

GAVEL_RESET_INTERVAL = 1920.0
"""Gavel's minimum seconds between two recomputations of the allocation."""


@dataclass(frozen=True)
class RoundState:
    """What a policy may see at the start of a round; arrays are indexed by job row."""

    chips: tuple[str, ...]
    capacity: IntArray
    job_ids: IntArray
    throughput: FloatArray
    """Steps per second of the whole job on its ``scale_factor`` GPUs; 0: cannot run."""
    scale_factor: IntArray
    remaining_steps: FloatArray
    attained: FloatArray
    """Seconds the job has run so far, on any chip."""
    arrival: FloatArray
    job_class: IntArray | None = None
    """Equal values mark interchangeable jobs (same job type and scale factor)."""
    priority_weight: FloatArray | None = None
    now: float = 0.0

    @property
    def num_jobs(self) -> int:
        return int(self.job_ids.shape[0])

    def weights(self) -> FloatArray:
        if self.priority_weight is None:
            return np.ones(self.num_jobs)
        return np.asarray(self.priority_weight, dtype=np.float64)


class RoundPolicy(ABC):
    """A policy; class attributes tell the mechanism how to apply its allocation."""

    name: ClassVar[str]
    heterogeneity_aware: ClassVar[bool]
    work_conserving: ClassVar[bool] = True
    """Whether the mechanism may run jobs without allocation on GPUs left idle."""
    shuffle_chip_order: ClassVar[bool] = False
    """Gavel visits chip types in random order for heterogeneity-agnostic policies."""

    def __init__(self, reset_interval: float = GAVEL_RESET_INTERVAL) -> None:
        self.reset_interval = reset_interval

    @abstractmethod
    def allocate(self, state: RoundState) -> FloatArray:
        """The allocation ``X`` (jobs x chips) for ``state``."""


def isolated_coefficients(
    throughput: FloatArray, scale_factor: npt.ArrayLike, capacity: npt.ArrayLike
) -> FloatArray:
    """Gavel's max-min coefficients: ``throughput * scale_factor / isolated throughput``.

    The isolated allocation gives every job the same share of every chip type, divided by
    its scale factor; common factors (the number of jobs) are dropped.
    """
    sf = np.asarray(scale_factor, dtype=np.float64)
    cap = np.asarray(capacity, dtype=np.float64)
    iso = (throughput * cap[None, :]).sum(axis=1) / sf
    safe = np.where(iso > 0, iso, 1.0)
    coef: FloatArray = throughput * (sf / safe)[:, None]
    return coef


def water_fill(rate: FloatArray, usage: FloatArray, budget: float) -> tuple[FloatArray, float]:
    """Max-min fill: ``y_i = min(1, t / rate_i)`` with the largest ``t`` such that
    ``sum_i usage_i * y_i <= budget``. Returns ``(y, t)``; rows with ``rate <= 0`` get 0."""
    n = rate.shape[0]
    y = np.zeros(n)
    ok = rate > 0
    if not ok.any() or budget <= 0:
        return y, 0.0
    r, u = rate[ok], usage[ok]
    if u.sum() <= budget:
        y[ok] = 1.0
        return y, float(r.max())
    order = np.argsort(r, kind="stable")
    r_sorted, u_sorted = r[order], u[order]
    # S(t) at each breakpoint t = r_sorted[m]: rows 0..m saturated, the rest proportional
    saturated = np.cumsum(u_sorted)
    slope_rest = np.cumsum((u_sorted / r_sorted)[::-1])[::-1]
    rest = np.append(slope_rest[1:], 0.0)
    at_break = saturated + r_sorted * rest
    m = int(np.searchsorted(at_break, budget, side="right"))
    used = saturated[m - 1] if m > 0 else 0.0
    t = (budget - used) / slope_rest[m]
    filled = np.minimum(1.0, t / r)
    y[ok] = filled
    return y, float(t)


def allocation_violations(x: FloatArray, state: RoundState, tol: float = 1e-6) -> list[str]:
    """Ways ``x`` breaks the constraints of ``state`` (empty when feasible)."""
    problems: list[str] = []
    n, k = state.num_jobs, len(state.chips)
    if x.shape != (n, k):
        return [f"shape {x.shape} != {(n, k)}"]
    if np.any(x < -tol):
        problems.append("negative entries")
    rows = x.sum(axis=1)
    if np.any(rows > 1 + tol):
        problems.append(f"row sums up to {rows.max():.6f} > 1")
    used = (x * state.scale_factor[:, None]).sum(axis=0)
    for j, chip in enumerate(state.chips):
        if used[j] > state.capacity[j] + tol:
            problems.append(f"{chip}: {used[j]:.6f} GPUs > capacity {state.capacity[j]}")
    if np.any((state.throughput <= 0) & (x > tol)):
        problems.append("time allocated on a chip where the job cannot run")
    return problems


class FifoPolicy(RoundPolicy):
    """Gavel's FIFO: arrival order, a random chip type with room, sticky, head-of-line."""

    name = "fifo"
    heterogeneity_aware = False
    work_conserving = False

    def __init__(self, seed: int = 0, reset_interval: float = GAVEL_RESET_INTERVAL) -> None:
        super().__init__(reset_interval)
        self._rng = random.Random(seed)
        self._placed: dict[int, int] = {}

    def allocate(self, state: RoundState) -> FloatArray:
        n, k = state.num_jobs, len(state.chips)
        ids = [int(j) for j in state.job_ids]
        alive = set(ids)
        self._placed = {j: c for j, c in self._placed.items() if j in alive}
        row_of = {job: i for i, job in enumerate(ids)}
        free = state.capacity.astype(np.int64).copy()
        for job, chip in self._placed.items():
            free[chip] -= int(state.scale_factor[row_of[job]])
        order = sorted(range(n), key=lambda i: (state.arrival[i], ids[i]))
        for i in order:
            if ids[i] in self._placed:
                continue
            sf = int(state.scale_factor[i])
            fits = [c for c in range(k) if free[c] >= sf and state.throughput[i, c] > 0]
            if not fits:
                break  # first in, first out: nobody overtakes the head of the queue
            chip = fits[self._rng.randrange(len(fits))]
            self._placed[ids[i]] = chip
            free[chip] -= sf
        x = np.zeros((n, k))
        for job, chip in self._placed.items():
            x[row_of[job], chip] = 1.0
        return x


class LasPolicy(RoundPolicy):
    """Gavel's LAS: max-min fairness with all chip types equally fast (water-filling)."""

    name = "las"
    heterogeneity_aware = False
    shuffle_chip_order = True

    def allocate(self, state: RoundState) -> FloatArray:
        n, k = state.num_jobs, len(state.chips)
        if n == 0:
            return np.zeros((0, k))
        runnable = state.throughput > 0
        cap = state.capacity.astype(np.float64)
        reach = runnable @ cap  # GPUs a job could use at all
        sf = state.scale_factor.astype(np.float64)
        equal = runnable.astype(np.float64)
        coef = isolated_coefficients(equal, sf, cap) / state.weights()[:, None]
        rate = coef.max(axis=1)
        y, _ = water_fill(rate, sf, float(cap.sum()))
        share = np.where(reach > 0, y / np.where(reach > 0, reach, 1.0), 0.0)
        x: FloatArray = share[:, None] * (equal * cap[None, :])
        used = (x * sf[:, None]).sum(axis=0)
        over = used > cap
        if over.any():  # jobs barred from some chips crowd the others: scale those back
            x[:, over] *= cap[over] / used[over]
        return x


class MaxMinFairnessPerfPolicy(RoundPolicy):
    """Gavel's heterogeneity-aware max-min fairness (LP over job classes)."""

    name = "max_min_fairness_perf"
    heterogeneity_aware = True

    def allocate(self, state: RoundState) -> FloatArray:
        n, k = state.num_jobs, len(state.chips)
        if n == 0:
            return np.zeros((0, k))
        coef = isolated_coefficients(state.throughput, state.scale_factor, state.capacity)
        coef = coef / state.weights()[:, None]
        sf = state.scale_factor.astype(np.float64)
        keys = np.concatenate([coef, sf[:, None]], axis=1)
        classes, rows, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        result = max_min_lp(classes[:, :k], classes[:, k], state.capacity, counts)
        x: FloatArray = result.x[rows.reshape(-1)]
        return x


class NormalizedThroughputPolicy(RoundPolicy):
    """Maximise ``sum_i w_i sum_j X[i, j] * throughput[i, j] / best_throughput[i]``.

    ``w_i = scale_factor**width_exponent * remaining_time**-size_exponent *
    (attained + quantum)**-service_exponent``, where ``remaining_time`` is the job's
    remaining steps at its best chip's speed. With the defaults it needs no job sizes.
    """

    name = "max_normalized_throughput_perf"
    heterogeneity_aware = True

    def __init__(
        self,
        width_exponent: float = 0.0,
        size_exponent: float = 0.0,
        service_exponent: float = 0.0,
        quantum: float = 3600.0,
        fairness: float = 0.0,
        reset_interval: float = 0.0,
    ) -> None:
        super().__init__(reset_interval)
        if not 0.0 <= fairness < 1.0:
            raise ValueError("fairness must be in [0, 1)")
        if quantum <= 0:
            raise ValueError("quantum must be > 0")
        self.width_exponent = width_exponent
        self.size_exponent = size_exponent
        self.service_exponent = service_exponent
        self.quantum = quantum
        self.fairness = fairness

    def values(self, state: RoundState) -> FloatArray:
        """Each job's relative throughput per chip type times its weight ``w_i``."""
        best = state.throughput.max(axis=1)
        safe_best = np.where(best > 0, best, 1.0)
        relative = state.throughput / safe_best[:, None]
        weight = state.scale_factor.astype(np.float64) ** self.width_exponent
        if self.size_exponent:
            remaining_time = np.maximum(state.remaining_steps, 1e-9) / safe_best
            weight = weight * remaining_time**-self.size_exponent
        if self.service_exponent:
            weight = weight * (state.attained + self.quantum) ** -self.service_exponent
        v: FloatArray = relative * (weight * state.weights())[:, None]
        return v

    def allocate(self, state: RoundState) -> FloatArray:
        n, k = state.num_jobs, len(state.chips)
        if n == 0:
            return np.zeros((0, k))
        values = self.values(state)
        if self.fairness <= 0:
            return max_weighted_lp(values, state.scale_factor, state.capacity).x
        coef = isolated_coefficients(state.throughput, state.scale_factor, state.capacity)
        fair = max_min_lp(coef, state.scale_factor, state.capacity, fill=False).objective
        floors = np.full(n, self.fairness * fair * (1.0 - 1e-6))
        return max_weighted_lp(
            values, state.scale_factor, state.capacity, floors=floors, floor_coefficients=coef
        ).x


class SrptPerfPolicy(NormalizedThroughputPolicy):
    """Shortest remaining time first, heterogeneity-aware (clairvoyant): ``w_i = 1 / T_i``."""

    name = "srpt_perf"

    def __init__(self, fairness: float = 0.0, reset_interval: float = 0.0) -> None:
        super().__init__(
            width_exponent=0.0,
            size_exponent=1.0,
            fairness=fairness,
            reset_interval=reset_interval,
        )


_FACTORIES: Mapping[str, type[RoundPolicy]] = {
    "fifo": FifoPolicy,
    "las": LasPolicy,
    "max_min_fairness_perf": MaxMinFairnessPerfPolicy,
    "max_normalized_throughput_perf": NormalizedThroughputPolicy,
    "srpt_perf": SrptPerfPolicy,
}
POLICY_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_policy(name: str, *, seed: int = 0, **options: float) -> RoundPolicy:
    """A fresh policy by name; ``seed`` feeds FIFO's chip choice, ``options`` the rest."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}") from None
    if factory is FifoPolicy:
        return FifoPolicy(seed=seed, **options)
    return factory(**options)
