"""The event simulator on tiny hand-made fleets whose answers are known."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from suanli.perf.model import PerfModel
from suanli.policy.rules import RuleSet, default_rules
from suanli.policy.snapshot import DataCenterView, FleetSnapshot, TenantView
from suanli.scheduler.placement import BINPACK, THROUGHPUT, Policy, RoundResult, Scheduler
from suanli.scheduler.workload import ClusterView, NodeView, Workload
from suanli.sim.assumptions import perf_model
from suanli.sim.cluster import JobRecord, SimConfig, SimJob, SimRun, simulate
from suanli.sim.report import jain, summarize

CN = TenantView("acme", "CN", True)
DCS = {
    "cn": DataCenterView("cn", "CN", "private", {"H100 SXM": (2_000_000, "CNY")}),
    "sg": DataCenterView("sg", "SG", "private", {"H100 SXM": (3_000_000, "USD")}),
}
SNAP = FleetSnapshot(DCS)
CONFIG = SimConfig(policy=BINPACK, interval_s=0.0)


def node(name: str, dc: str = "cn", chip: str = "H100 SXM", n: int = 8) -> NodeView:
    country = DCS[dc].country if dc in DCS else "CN"
    domestic = chip.startswith("Ascend")
    return NodeView(name, dc, country, chip, n, "", None, domestic, 2_000_000)


def job(
    jid: str, at: float, runtime: float, n: int = 8, kind: str = "training", **kw: object
) -> SimJob:
    w = Workload(jid, kw.pop("tenant", CN), kind, n, submitted_at=at, runtime_s=runtime, **kw)  # type: ignore[arg-type]
    return SimJob(w)


def by_id(run: SimRun) -> dict[str, JobRecord]:
    return {j.id: j for j in run.jobs}


def test_two_nodes_three_jobs_exact_completion_times() -> None:
    nodes = [node("a"), node("b")]
    jobs = [job("j1", 0, 100), job("j2", 0, 50), job("j3", 10, 30)]
    run = simulate(jobs, nodes, SNAP, CONFIG)
    got = by_id(run)
    # j1 and j2 start at 0 on the two nodes; j3 waits for j2's node (free at 50)
    assert (got["j1"].start, got["j1"].finish) == (0, 100)
    assert (got["j2"].start, got["j2"].finish) == (0, 50)
    assert (got["j3"].start, got["j3"].finish) == (50, 80)
    s = summarize(run)
    assert s["jct_s"]["mean"] == pytest.approx((100 + 50 + 70) / 3)
    assert s["queueing_s"]["median"] == 0
    assert s["makespan_s"] == 100
    # busy: 8*100 + 8*50 + 8*30 accelerator-seconds of 16*100
    assert s["utilization"]["H100 SXM"] == pytest.approx((800 + 400 + 240) / 1600)
    assert s["violations"]["count"] == 0
    assert s["jobs"]["finished"] == 3


def test_the_interval_batches_events() -> None:
    nodes = [node("a")]
    jobs = [job("j1", 0, 100), job("j2", 5, 10)]
    run = simulate(jobs, nodes, SNAP, replace(CONFIG, interval_s=60.0))
    got = by_id(run)
    # rounds at 0, at 60 (j2 arrived at 5; nothing free) and at 120 (j1 ended at 100)
    assert got["j1"].finish == 100
    assert got["j2"].start == 120
    assert got["j2"].finish == 130
    assert [t for t, _ in run.queue] == [0, 60, 120]


def test_runtime_scales_with_the_chip_rate() -> None:
    nodes = [node("a", chip="H20")]
    run = simulate([job("t", 0, 100)], nodes, FleetSnapshot({"cn": DCS["cn"]}), CONFIG)
    perf = PerfModel()
    ratio = (
        perf.throughput("training", None, "H100 SXM").rate  # type: ignore[operator]
        / perf.throughput("training", None, "H20").rate
    )
    assert by_id(run)["t"].finish == pytest.approx(100 * ratio)
    # inference holds its devices for its runtime on any chip
    run = simulate([job("i", 0, 100, 1, "inference")], nodes, SNAP, CONFIG)
    assert by_id(run)["i"].finish == 100


def test_ascend_runs_at_the_assumed_rate() -> None:
    nodes = [node("a", chip="Ascend 910B")]
    run = simulate([job("t", 0, 100)], nodes, SNAP, CONFIG)
    perf = perf_model()
    h100 = perf.throughput("training", None, "H100 SXM").rate
    ascend = perf.throughput("training", None, "Ascend 910B").rate
    assert ascend is not None
    assert h100 is not None
    assert by_id(run)["t"].finish == pytest.approx(100 * h100 / ascend)
    s = summarize(run)
    assert s["domestic_usage_share"] == 1.0
    assert s["perf_assumptions"][0]["chip"] == "Ascend 910B"


def test_fractional_shares_pack_on_one_device() -> None:
    nodes = [node("a", n=1)]
    jobs = [job(f"p{i}", 0, 100, 1, "inference", gpu_milli=250) for i in range(5)]
    run = simulate(jobs, nodes, SNAP, CONFIG)
    got = by_id(run)
    starts = sorted(got[f"p{i}"].start or 0.0 for i in range(5))
    assert starts == [0, 0, 0, 0, 100]  # four quarters fit, the fifth waits
    s = summarize(run)
    # 4 x 0.25 x 100 + 0.25 x 100 busy device-seconds over 1 device x 200 s
    assert s["utilization"]["H100 SXM"] == pytest.approx(125 / 200)


@pytest.mark.parametrize("keep", [True, False])
def test_preempted_spot_work_requeues(keep: bool) -> None:
    nodes = [node("a")]
    jobs = [job("spot", 0, 100, priority="spot"), job("high", 40, 10)]
    run = simulate(jobs, nodes, SNAP, replace(CONFIG, keep_progress=keep))
    got = by_id(run)
    assert got["high"].start == 40
    assert got["high"].finish == 50
    assert got["spot"].preemptions == 1
    # restarted at 50: 60 s left when it keeps its progress, all 100 when it does not
    assert got["spot"].finish == (110 if keep else 150)
    assert summarize(run)["jobs"]["preemptions"] == 1


def test_a_residency_bound_tenant_never_lands_abroad() -> None:
    nodes = [node("cn1", "cn"), node("sg1", "sg"), node("sg2", "sg")]
    bound = {"residency": frozenset({"CN"}), "residency_sources": ("acme/data",)}
    jobs = [job(f"r{i}", i, 100, **bound) for i in range(4)]  # type: ignore[arg-type]
    run = simulate(jobs, nodes, SNAP, CONFIG)
    assert all(j.data_centers == ["cn"] for j in run.jobs)
    assert run.violations == []
    assert [j.start for j in run.jobs] == [0, 100, 200, 300]


def test_a_blocked_head_gets_its_reservation_and_is_not_starved() -> None:
    """One node of 8: a0 (4) runs, then B (8) waits, then a stream of 4-device jobs that
    would fit beside a0. EASY: B is reserved the node when a0 ends; the small jobs wait."""
    jobs = [job("a0", 0, 100, n=4), job("B", 1, 100, n=8)]
    jobs += [job(f"s{k:02d}", 2 + k * 50, 100, n=4) for k in range(20)]
    got = by_id(simulate(jobs, [node("a")], SNAP, CONFIG))
    assert (got["B"].start, got["B"].finish) == (100.0, 200.0)
    assert got["s00"].start is not None
    assert got["s00"].start >= 200.0


def test_jobs_that_can_never_fit_are_not_queued() -> None:
    run = simulate([job("big", 0, 10, 16), job("ok", 1, 10)], [node("a")], SNAP, CONFIG)
    got = by_id(run)
    assert got["big"].start is None
    assert "never fits" in got["big"].reason
    assert got["ok"].finish == 11
    assert summarize(run)["never_started"]["count"] == 1


class _IgnoresResidency(Scheduler):
    """A broken scheduler: places as if no data were bound to a country."""

    def schedule_round(
        self, pending: Sequence[Workload], *, now: float | None = None, explain: bool = True
    ) -> RoundResult:
        free = [replace(w, residency=None, residency_sources=()) for w in pending]
        return super().schedule_round(free, now=now, explain=explain)


def _broken(
    cluster: ClusterView, rules: RuleSet, snapshot: FleetSnapshot, policy: Policy, perf: PerfModel
) -> Scheduler:
    return _IgnoresResidency(cluster, rules, snapshot, policy, perf=perf)


def test_the_violation_check_catches_a_broken_scheduler() -> None:
    # the faster H100 is abroad; a CN-bound job may only take the H20 at home
    nodes = [node("sg1", "sg"), node("cn1", "cn", chip="H20")]
    bound = {"residency": frozenset({"CN"}), "residency_sources": ("acme/data",)}
    jobs = [job("r", 0, 100, **bound)]  # type: ignore[arg-type]
    config = replace(CONFIG, policy=THROUGHPUT)
    good = simulate(jobs, nodes, SNAP, config)
    assert good.violations == []
    assert good.jobs[0].data_centers == ["cn"]
    run = simulate(jobs, nodes, SNAP, config, scheduler_factory=_broken)
    assert run.jobs[0].data_centers == ["sg"]
    assert len(run.violations) == 1
    assert run.violations[0].job == "r"
    assert "RESIDENCY" in run.violations[0].sentence
    assert summarize(run)["violations"]["count"] == 1


def test_quota_is_checked_with_the_holdings_of_the_moment() -> None:
    rules = default_rules()  # QUOTA-DEFAULT: 512 accelerators, 256 of 3A090.a (H100)
    nodes = [node(f"n{i}") for i in range(40)]
    jobs = [job(f"q{i}", 0, 100) for i in range(40)]
    run = simulate(jobs, nodes, SNAP, replace(CONFIG, rules=rules))
    starts = sorted(j.start for j in run.jobs)  # type: ignore[type-var]
    assert starts.count(0) == 32  # 256 H100 at once for one tenant
    assert run.violations == []


def test_fairness_and_jain() -> None:
    assert jain([1.0, 1.0, 1.0]) == 1.0
    assert jain([1.0, 0.0]) == pytest.approx(0.5)
    assert jain([]) is None
    nodes = [node("a")]
    other = TenantView("beta", "CN", True)
    jobs = [job("a1", 0, 100), job("b1", 0, 100, tenant=other)]
    s = summarize(simulate(jobs, nodes, SNAP, CONFIG))
    # one tenant waits 100 s: JCT/ideal 1 and 2
    assert sorted(s["fairness"]["per_tenant"].values()) == [1.0, 2.0]
    assert s["fairness"]["max"] == 2.0
    assert s["fairness"]["jain"] == pytest.approx(9 / 10)


def test_money_per_currency() -> None:
    nodes = [node("cn1", "cn"), node("sg1", "sg")]
    jobs = [job("a", 0, 3600), job("b", 0, 3600)]
    run = simulate(jobs, nodes, SNAP, CONFIG)
    prices = {"H100 SXM": (10_000_000, 0.4, "CNY")}
    s = summarize(run, prices)
    assert s["money"]["CNY"]["cost_busy"] == 16.0  # 8 accelerator-hours x 2 CNY
    assert s["money"]["USD"]["cost_busy"] == 24.0  # 8 x 3 USD
    assert s["money"]["CNY"]["revenue"] == 160.0  # 16 accelerator-hours x 10 CNY
    spot = simulate([job("s", 0, 3600, priority="spot")], nodes[:1], SNAP, CONFIG)
    assert summarize(spot, prices)["money"]["CNY"]["revenue"] == 48.0  # 40% off
