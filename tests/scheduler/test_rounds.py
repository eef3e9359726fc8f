"""Round-based policies and their LPs: feasibility, the closed forms, and preferences."""

from __future__ import annotations

import time

import numpy as np
import pytest

from suanli.scheduler.lp import max_min_lp, max_weighted_lp
from suanli.scheduler.rounds import (
    POLICY_NAMES,
    FifoPolicy,
    MaxMinFairnessPerfPolicy,
    RoundState,
    SrptPerfPolicy,
    allocation_violations,
    isolated_coefficients,
    make_policy,
    water_fill,
)

CHIPS = ("v100", "p100", "k80")


def _state(
    n: int, seed: int = 0, capacity: tuple[int, ...] = (36, 36, 36), zeros: bool = True
) -> RoundState:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.5, 30.0, n)
    speed = rng.uniform([0.6, 0.3, 0.05], [1.0, 1.4, 0.6], (n, 3))
    sf = rng.choice([1, 1, 1, 1, 2, 4, 8], n).astype(np.int64)
    thr = base[:, None] * speed * sf[:, None]
    if zeros:
        thr[rng.random(n) < 0.05, 2] = 0.0  # some jobs cannot run on the K80s
    return RoundState(
        chips=CHIPS,
        capacity=np.array(capacity, dtype=np.int64),
        job_ids=np.arange(n, dtype=np.int64),
        throughput=thr,
        scale_factor=sf,
        remaining_steps=rng.uniform(1e3, 1e7, n),
        attained=rng.uniform(0, 1e5, n),
        arrival=np.sort(rng.uniform(0, 1e5, n)),
    )


@pytest.mark.parametrize("name", POLICY_NAMES)
@pytest.mark.parametrize(("n", "seed"), [(1, 0), (5, 1), (40, 2), (300, 3)])
def test_allocations_are_feasible(name: str, n: int, seed: int) -> None:
    state = _state(n, seed)
    x = make_policy(name).allocate(state)
    assert allocation_violations(x, state) == []


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_empty_and_tiny_fleets(name: str) -> None:
    state = _state(0)
    assert make_policy(name).allocate(state).shape == (0, 3)
    small = _state(12, 5, capacity=(1, 2, 0), zeros=False)
    x = make_policy(name).allocate(small)
    assert allocation_violations(x, small) == []
    assert np.all(x[:, 2] == 0)


def test_las_ignores_speed_and_shares_equally() -> None:
    state = _state(200, 4, zeros=False)
    x = make_policy("las").allocate(state)
    # twice as many GPUs asked for as there are: every 1-GPU job gets the same share,
    # spread over chip types by their size, and the fleet is used up
    ones = state.scale_factor == 1
    assert np.ptp(x[ones].sum(axis=1)) < 1e-9
    assert np.allclose(x[ones, 0], x[ones, 1])
    used = (x * state.scale_factor[:, None]).sum(axis=0)
    assert used == pytest.approx([36, 36, 36])
    faster = RoundState(**{**state.__dict__, "throughput": state.throughput * [5, 1, 1]})
    assert np.allclose(make_policy("las").allocate(faster), x)


def test_water_fill_matches_the_max_min_lp() -> None:
    rng = np.random.default_rng(9)
    rate = rng.choice([1.0, 4.0, 16.0, 64.0], 50)
    usage = np.sqrt(rate)
    y, t = water_fill(rate, usage, 40.0)
    assert (usage * y).sum() == pytest.approx(40.0)
    lp = max_min_lp(rate[:, None], usage, [40.0])
    # same worst-off value as the LP; water-filling then lifts the rest to a common level
    assert np.min(rate * y) == pytest.approx(lp.objective, rel=1e-6)
    assert np.allclose(rate * y, np.minimum(rate, t))
    assert t >= lp.objective
    everyone, _ = water_fill(rate, usage, 1e9)
    assert np.all(everyone == 1.0)


def test_max_min_classes_equal_per_job_program() -> None:
    state = _state(60, 6, zeros=False)
    coef = isolated_coefficients(state.throughput, state.scale_factor, state.capacity)
    per_job = max_min_lp(coef, state.scale_factor, state.capacity, fill=False)
    # duplicate every job: as classes of two the optimum halves with capacity fixed
    classes = max_min_lp(coef, state.scale_factor, state.capacity, counts=np.full(60, 2.0))
    doubled = max_min_lp(
        np.vstack([coef, coef]),
        np.concatenate([state.scale_factor] * 2),
        state.capacity,
        fill=False,
    )
    assert classes.objective == pytest.approx(doubled.objective, rel=1e-6)
    assert doubled.objective <= per_job.objective + 1e-12
    used = (classes.x * 2 * state.scale_factor[:, None]).sum(axis=0)
    assert np.all(used <= state.capacity + 1e-6)


def test_max_min_perf_puts_each_job_where_it_is_relatively_fastest() -> None:
    # one V100, one P100: job 0 runs 10x faster on the V100, job 1 1.3x faster on the P100
    thr = np.array([[10.0, 1.0, 0.0], [1.5, 2.0, 0.0]])
    state = RoundState(
        chips=CHIPS,
        capacity=np.array([1, 1, 0]),
        job_ids=np.arange(2),
        throughput=thr,
        scale_factor=np.ones(2, dtype=np.int64),
        remaining_steps=np.ones(2),
        attained=np.zeros(2),
        arrival=np.zeros(2),
    )
    x = MaxMinFairnessPerfPolicy().allocate(state)
    assert np.allclose(x, [[1, 0, 0], [0, 1, 0]])
    # LAS splits both chips evenly without looking at speed
    assert np.allclose(make_policy("las").allocate(state), [[0.5, 0.5, 0], [0.5, 0.5, 0]])


def test_max_min_perf_beats_an_even_split_by_trading_chips() -> None:
    # one V100, two P100s; job 0 runs 10x faster on the V100, jobs 1-3 1.5x faster on the
    # P100s: job 0 gets V100 time only, the others all the P100 time, and all four end up
    # equally and better off than under LAS's even split
    thr = np.array([[10.0, 1.0, 0.0]] + [[2.0, 3.0, 0.0]] * 3)
    state = RoundState(
        chips=CHIPS,
        capacity=np.array([1, 2, 0]),
        job_ids=np.arange(4),
        throughput=thr,
        scale_factor=np.ones(4, dtype=np.int64),
        remaining_steps=np.ones(4),
        attained=np.zeros(4),
        arrival=np.zeros(4),
    )
    x = MaxMinFairnessPerfPolicy().allocate(state)
    assert allocation_violations(x, state) == []
    assert x[0, 1] == pytest.approx(0.0, abs=1e-9)
    assert x[0, 0] > x[1, 0]
    coef = isolated_coefficients(thr, state.scale_factor, state.capacity)
    value = (coef * x).sum(axis=1)
    assert np.ptp(value) < 1e-6
    las = (coef * make_policy("las").allocate(state)).sum(axis=1)
    assert value.min() > las.max() + 0.05


def test_srpt_perf_prefers_short_jobs_on_their_best_chip() -> None:
    thr = np.array([[10.0, 1.0, 1.0], [1.25, 1.0, 1.0], [10.0, 9.0, 1.0]])
    state = RoundState(
        chips=CHIPS,
        capacity=np.array([1, 1, 1]),
        job_ids=np.arange(3),
        throughput=thr,
        scale_factor=np.ones(3, dtype=np.int64),
        remaining_steps=np.array([36_000.0, 3_600.0, 1e9]),
        attained=np.zeros(3),
        arrival=np.zeros(3),
    )
    x = SrptPerfPolicy().allocate(state)
    assert np.allclose(x, [[1, 0, 0], [0, 0, 1], [0, 1, 0]]) or np.allclose(
        x, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    )
    assert x[0, 0] == 1.0  # the job that gains most from the V100 holds it


def test_srpt_fairness_floor_keeps_everyone_running() -> None:
    state = _state(150, 8, zeros=False)
    greedy = SrptPerfPolicy().allocate(state)
    floored = SrptPerfPolicy(fairness=0.5).allocate(state)
    assert allocation_violations(floored, state) == []
    coef = isolated_coefficients(state.throughput, state.scale_factor, state.capacity)
    fair = max_min_lp(coef, state.scale_factor, state.capacity, fill=False).objective
    assert (coef * floored).sum(axis=1).min() >= 0.5 * fair * (1 - 1e-5)
    assert (coef * greedy).sum(axis=1).min() < 0.5 * fair


def test_fifo_is_sticky_and_blocks_at_the_head() -> None:
    fifo = FifoPolicy(seed=1)
    state = RoundState(
        chips=("g",),
        capacity=np.array([4]),
        job_ids=np.array([10, 11, 12, 13]),
        throughput=np.ones((4, 1)),
        scale_factor=np.array([2, 4, 1, 1]),
        remaining_steps=np.ones(4),
        attained=np.zeros(4),
        arrival=np.array([0.0, 1, 2, 3]),
    )
    x = fifo.allocate(state)
    # job 10 takes 2 GPUs; job 11 needs 4 and blocks 12 and 13 although they would fit
    assert x[:, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    gone = RoundState(
        **{
            **state.__dict__,
            "job_ids": np.array([11, 12, 13]),
            "throughput": np.ones((3, 1)),
            "scale_factor": np.array([4, 1, 1]),
            "remaining_steps": np.ones(3),
            "attained": np.zeros(3),
            "arrival": np.array([1.0, 2, 3]),
        }
    )
    assert fifo.allocate(gone)[:, 0].tolist() == [1.0, 0.0, 0.0]


def test_max_weighted_lp_matches_brute_force_on_a_tiny_case() -> None:
    values = np.array([[3.0, 1.0], [2.5, 2.0], [1.0, 0.5]])
    res = max_weighted_lp(values, [1, 1, 1], [1, 1])
    assert res.objective == pytest.approx(5.0)  # job 0 on chip 0, job 1 on chip 1
    with pytest.raises(ValueError, match="scale factors"):
        max_weighted_lp(values, [0, 1, 1], [1, 1])


def test_unknown_policy() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("nope")


def test_lp_policies_are_fast_on_hundreds_of_jobs() -> None:
    state = _state(400, 11)
    for name in ("max_min_fairness_perf", "max_normalized_throughput_perf", "srpt_perf"):
        policy = make_policy(name)
        policy.allocate(state)  # warm up
        started = time.perf_counter()
        policy.allocate(state)
        assert time.perf_counter() - started < 0.5, name  # typically 5-40 ms
