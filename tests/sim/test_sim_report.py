"""Report metrics on a hand-made run, the what-if comparison, and the trace sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from suanli.sim.assumptions import DEFAULT_ASSUMPTIONS
from suanli.sim.cluster import JobRecord, Segment, SimRun
from suanli.sim.report import (
    _utilization_series,
    compare,
    headline,
    percentile,
    summarize,
    write_reports,
)
from suanli.sim.sources import cut, philly_jobs

PHILLY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "traces" / "philly"
needs_philly = pytest.mark.skipif(not PHILLY.exists(), reason="Philly trace not present")


def hand_run(label: str = "base", capacity: int = 8) -> SimRun:
    """Two jobs on one data center of 8 x 910B (cost 3.6 CNY/h) and 8 x H20 (no cost):
    a: 4 devices on 910B, 0-3600 s; b: 2 devices on H20, arrives 0, starts 1800, ends 7200;
    c: never starts."""
    jobs = [
        JobRecord("a", "t1", "training", "high", 4, 1000, 0, 3600, 3600, 0, 3600, ["Ascend 910B"]),
        JobRecord("b", "t2", "training", "spot", 2, 1000, 0, 3600, 3600, 1800, 7200, ["H20"]),
        JobRecord("c", "t2", "training", "high", 64, 1000, 0, 10, None, reason="never fits: x"),
    ]
    segments = [
        Segment("a", 0, 3600, "Ascend 910B", (("dc", 4),), 4.0, True, False, False),
        Segment("b", 1800, 7200, "H20", (("dc", 2),), 2.0, False, True, False),
    ]
    return SimRun(
        jobs=jobs,
        segments=segments,
        violations=[],
        round_times=[0.001, 0.002, 0.003],
        queue=[(0.0, 1), (1800.0, 0)],
        capacity={"Ascend 910B": capacity, "H20": 8},
        capacity_by_place={("dc", "Ascend 910B"): capacity, ("dc", "H20"): 8},
        domestic_chips=frozenset({"Ascend 910B"}),
        costs={("dc", "Ascend 910B"): (3_600_000, "CNY")},
        policy="throughput",
        reference_chip="H100 SXM",
        assumptions=DEFAULT_ASSUMPTIONS,
        wall_s=0.5,
        start=0.0,
        end=7200.0,
        label=label,
    )


def test_hand_computed_metrics() -> None:
    s = summarize(hand_run(), {"H20": (10_000_000, 0.5, "CNY")})
    assert s["jct_s"]["mean"] == (3600 + 7200) / 2
    assert s["queueing_s"]["mean"] == 900
    assert s["makespan_s"] == 7200
    # 910B: 4 x 3600 of 8 x 7200; H20: 2 x 5400 of 8 x 7200
    assert s["utilization"]["Ascend 910B"] == pytest.approx(14400 / 57600)
    assert s["utilization"]["H20"] == pytest.approx(10800 / 57600)
    assert s["domestic_usage_share"] == pytest.approx(14400 / (14400 + 10800))
    money = s["money"]["CNY"]
    assert money["cost_busy"] == pytest.approx(4 * 3.6)  # 4 accelerator-hours of 910B
    assert money["cost_capacity"] == pytest.approx(8 * 2 * 3.6)  # 8 x 2 h held
    assert money["revenue"] == pytest.approx(3 * 10 * 0.5)  # 3 spot H20-hours, half off
    assert s["uncosted_accelerator_hours"] == pytest.approx(3.0)
    assert s["unpriced_accelerator_hours"] == {"Ascend 910B": pytest.approx(4.0)}
    assert s["fairness"]["per_tenant"] == {"t1": 1.0, "t2": 2.0}
    assert s["never_started"]["most_common_reason"] == "never fits: x"
    assert s["scheduler_ms_per_round"]["median"] == pytest.approx(2.0)
    assert s["scheduler_ms_per_round"]["max"] == pytest.approx(3.0)
    assert percentile([], 50) is None


def test_utilization_over_time() -> None:
    edges = np.array([0.0, 1800.0, 3600.0, 5400.0, 7200.0])
    series = _utilization_series(hand_run(), edges)
    assert series["Ascend 910B"] == pytest.approx([0.5, 0.5, 0.0, 0.0])
    assert series["H20"] == pytest.approx([0.0, 0.25, 0.25, 0.25])


def test_compare_side_by_side(tmp_path: Path) -> None:
    base, changed = summarize(hand_run("baseline")), summarize(hand_run("changed", 16))
    rows = {r[0]: r[1:] for r in compare(base, changed)}
    assert rows["accelerators: Ascend 910B"] == ("8", "16", "+8")
    assert rows["utilization: Ascend 910B"][2] == "-12.5 pt"
    assert rows["JCT mean"][2] == "+0.0%"
    assert any(name == "compliance violations" for name, _, _ in headline(base))
    written = write_reports(
        tmp_path, [hand_run("baseline"), hand_run("changed", 16)], [base, changed], "t"
    )
    assert {p.name for p in written} >= {"jobs-baseline.csv", "jobs-changed.csv", "report.html"}


@needs_philly
def test_philly_jobs() -> None:
    jobs = philly_jobs(PHILLY / "philly.csv", residency=0.5, count=2000)
    assert len(jobs) == 2000
    arrivals = [j.workload.submitted_at for j in jobs]
    assert arrivals[0] == 0
    assert arrivals == sorted(arrivals)
    tenants = {j.workload.tenant.name for j in jobs}
    assert all(t.startswith("vc-") for t in tenants)
    bound = {j.workload.tenant.name for j in jobs if j.workload.residency == frozenset({"CN"})}
    assert bound
    assert bound < tenants
    big = [j.workload for j in jobs if j.workload.accelerators > 8]
    assert all(w.topology == "data_center" for w in big)
    assert all(j.scaling for j in jobs)
    day = cut(jobs, hours=24)
    assert all(j.workload.submitted_at <= 86400 for j in day)
