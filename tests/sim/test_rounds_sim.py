"""The round-based simulator on cases small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from suanli.scheduler.rounds import POLICY_NAMES, FifoPolicy, LasPolicy, make_policy
from suanli.sim.rounds import SimConfig, SimJob, Workload, simulate

ROUND = 360.0


def _one_chip(*jobs: tuple[float, float], rate: float = 1.0) -> Workload:
    """Jobs ``(arrival, steps)`` of one type on one chip type ``g``, ``rate`` steps/s."""
    return Workload.from_jobs(
        [SimJob(i, a, "t", 1, s, {"g": rate}) for i, (a, s) in enumerate(jobs)], ["g"]
    )


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_one_job_one_gpu(policy: str) -> None:
    # 1000 steps at 2 steps/s: 500 s, i.e. two rounds, the second cut short
    w = _one_chip((0.0, 1000.0), rate=2.0)
    r = simulate(w, {"g": 1}, make_policy(policy))
    assert r.jct()[0] == pytest.approx(500.0)
    assert r.rounds == math.ceil(500.0 / ROUND)
    assert r.start[0] == 0.0
    assert r.chips_used(0) == ("g",)
    assert r.summary().vs_lower_bound == pytest.approx(1.0)
    assert r.utilization()["g"] == pytest.approx(1.0)


def test_a_job_arriving_mid_round_waits_for_the_next_round() -> None:
    w = _one_chip((0.0, 720.0), (100.0, 360.0))
    r = simulate(w, {"g": 2}, make_policy("las"))
    # job 1 arrives while round [0, 360) runs; it starts at 360 and needs one round
    assert r.start.tolist() == [0.0, 360.0]
    assert r.jct().tolist() == [720.0, 620.0]


def test_two_jobs_one_gpu_fifo() -> None:
    w = _one_chip((0.0, 720.0), (0.0, 720.0))
    r = simulate(w, {"g": 1}, FifoPolicy(reset_interval=0.0))
    # first in runs two rounds to completion, then the second
    assert r.jct().tolist() == [720.0, 1440.0]
    assert r.start.tolist() == [0.0, 720.0]


def test_two_jobs_one_gpu_las_alternates() -> None:
    w = _one_chip((0.0, 720.0), (0.0, 720.0))
    r = simulate(w, {"g": 1}, make_policy("las"))
    # round by round the job that received less time runs: 0, 1, 0, 1
    assert r.jct().tolist() == [1080.0, 1440.0]
    assert r.start.tolist() == [0.0, 360.0]


def test_two_jobs_one_gpu_srpt_runs_the_shorter_first() -> None:
    w = _one_chip((0.0, 1080.0), (0.0, 360.0))
    r = simulate(w, {"g": 1}, make_policy("srpt_perf"))
    assert r.jct().tolist() == [1440.0, 360.0]


def test_gavel_reset_interval_holds_fifo_allocation() -> None:
    # with Gavel's 1920 s between allocations, FIFO (which only runs allocated jobs) leaves
    # the GPU idle after the first job until the next allowed reset
    w = _one_chip((0.0, 720.0), (0.0, 720.0))
    r = simulate(w, {"g": 1}, FifoPolicy())
    assert r.start[1] >= 1920.0
    assert r.jct()[1] == pytest.approx(r.start[1] + 720.0)


def test_scale_factor_needs_gpus_of_one_type() -> None:
    # a 4-GPU job fits only on the 4 slow GPUs, never on 2 fast + 2 slow
    job = SimJob(0, 0.0, "t", 4, 3600.0, {"fast": 10.0, "slow": 1.0})
    w = Workload.from_jobs([job], ["fast", "slow"])
    r = simulate(w, {"fast": 2, "slow": 4}, make_policy("max_min_fairness_perf"))
    assert r.chips_used(0) == ("slow",)
    assert r.jct()[0] == pytest.approx(3600.0)


def test_job_that_fits_nowhere_is_refused() -> None:
    w = Workload.from_jobs([SimJob(0, 0.0, "t", 8, 10.0, {"g": 1.0})], ["g"])
    with pytest.raises(ValueError, match="fit on no chip"):
        simulate(w, {"g": 4}, make_policy("las"))


@pytest.mark.parametrize("policy", ["max_normalized_throughput_perf", "srpt_perf"])
def test_heterogeneity_aware_policy_uses_the_relatively_faster_chip(policy: str) -> None:
    # one GPU of each type; job 0 is 10x faster on "fast", job 1 only 1.25x: job 1 should
    # take "slow" although it too is faster on "fast"
    jobs = [
        SimJob(0, 0.0, "a", 1, 36_000.0, {"fast": 10.0, "slow": 1.0}),
        SimJob(1, 0.0, "b", 1, 3_600.0, {"fast": 1.25, "slow": 1.0}),
    ]
    w = Workload.from_jobs(jobs, ["fast", "slow"])
    aware = simulate(w, {"fast": 1, "slow": 1}, make_policy(policy))
    assert aware.chips_used(0) == ("fast",)
    assert aware.chips_used(1) == ("slow",)
    assert aware.jct().tolist() == [3600.0, 3600.0]
    agnostic = simulate(w, {"fast": 1, "slow": 1}, make_policy("las"))
    assert agnostic.summary().mean > aware.summary().mean


def test_window_and_capacity() -> None:
    rng = np.random.default_rng(3)
    n = 60
    jobs = [
        SimJob(
            i,
            float(i * 300),
            f"t{i % 3}",
            int(rng.choice([1, 2, 4])),
            float(rng.uniform(1_000, 20_000)),
            {"a": float(rng.uniform(1, 3)), "b": 1.0},
        )
        for i in range(n)
    ]
    w = Workload.from_jobs(jobs, ["a", "b"])
    fleet = {"a": 4, "b": 4}
    for name in POLICY_NAMES:
        r = simulate(w, fleet, make_policy(name), SimConfig(until=range(10, 20)))
        assert np.isfinite(r.finish[10:20]).all(), name
        assert r.summary(range(10, 20)).count == 10
        assert all(0.0 <= u <= 1.0 + 1e-9 for u in r.utilization().values()), name
        assert np.all(r.finish[np.isfinite(r.finish)] >= w.arrival[np.isfinite(r.finish)])
        assert np.all(
            r.jct()[np.isfinite(r.finish)] >= w.lower_bound()[np.isfinite(r.finish)] - 1e-6
        )


def test_deterministic_with_a_seed() -> None:
    rng = np.random.default_rng(0)
    jobs = [
        SimJob(
            i,
            float(rng.uniform(0, 20_000)),
            "t",
            int(rng.choice([1, 2])),
            float(rng.uniform(500, 9_000)),
            {"x": 1.0, "y": 2.0, "z": 0.5},
        )
        for i in range(40)
    ]
    w = Workload.from_jobs(jobs, ["x", "y", "z"])
    fleet = {"x": 2, "y": 2, "z": 2}
    for name in ["fifo", "las", "max_normalized_throughput_perf"]:
        a = simulate(w, fleet, make_policy(name, seed=7), SimConfig(seed=7))
        b = simulate(w, fleet, make_policy(name, seed=7), SimConfig(seed=7))
        assert np.array_equal(a.finish, b.finish), name
        assert np.array_equal(a.chip_mask, b.chip_mask), name


def test_job_lines_and_makespan() -> None:
    w = _one_chip((0.0, 360.0), (10.0, 360.0))
    r = simulate(w, {"g": 1}, LasPolicy())
    assert r.job_lines() == [(0, 0.0, 0.0, 360.0, "g"), (1, 10.0, 360.0, 720.0, "g")]
    assert r.makespan() == 720.0
    assert r.end_time == 720.0


def test_per_chip_queue_mechanism_matches_on_a_single_chip() -> None:
    w = _one_chip((0.0, 720.0), (0.0, 720.0), (0.0, 360.0))
    a = simulate(w, {"g": 1}, LasPolicy(), SimConfig(global_queue=True))
    b = simulate(w, {"g": 1}, LasPolicy(), SimConfig(global_queue=False))
    assert np.array_equal(a.finish, b.finish)
