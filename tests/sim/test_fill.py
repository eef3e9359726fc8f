from __future__ import annotations

import pytest

from suanli.policy.snapshot import DataCenterView, FleetSnapshot, TenantView
from suanli.scheduler.placement import BINPACK, SPREAD
from suanli.scheduler.workload import NodeView, Workload
from suanli.sim.fill import demand_milli, fill
from suanli.sim.fill_report import fill_rows, fill_summary, write_fill_reports

CN = TenantView("acme", "CN", True)
SNAP = FleetSnapshot(
    {
        "cn-a": DataCenterView("cn-a", "CN", "private"),
        "sg-a": DataCenterView("sg-a", "SG", "private"),
    }
)


def node(name: str, dc: str = "cn-a", count: int = 2, country: str = "CN") -> NodeView:
    return NodeView(name, dc, country, "H100 SXM", count)


def pod(milli: int, n: int = 1, **kw: object) -> Workload:
    return Workload(f"p{milli}x{n}", CN, "inference", accelerators=n, gpu_milli=milli, **kw)  # type: ignore[arg-type]


def test_demand_counts_shares_of_devices() -> None:
    assert demand_milli(pod(250)) == 250
    assert demand_milli(pod(1000, 4)) == 4000


def test_halves_fill_two_devices_exactly() -> None:
    run = fill([pod(500)], [node("a")], SNAP, BINPACK, until=1.0)
    assert run.placed == 4
    assert run.failed == 0
    assert run.failed_at is None
    assert run.arrived == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert run.allocated == run.arrived
    assert run.final == 1.0
    assert run.fragmentation == 0.0
    assert run.allocated_at(0.6) == pytest.approx(0.6)


def test_spread_strands_capacity_that_binpack_keeps_whole() -> None:
    # 2 nodes of 1 device: a 300-milli pod then whole devices. Spread... binpack puts every
    # 300 on the same device; spread starts the second pod on the other node, so no whole
    # device is left for the 1000s.
    smalls_then_whole = [pod(300), pod(1000)]
    fleet = [node("a", count=1), node("b", count=1)]
    packed = fill(smalls_then_whole, fleet, SNAP, BINPACK, until=1.3, seed=3)
    spread = fill(smalls_then_whole, fleet, SNAP, SPREAD, until=1.3, seed=3)
    assert packed.final >= spread.final
    for run in (packed, spread):
        assert all(0 <= a <= 1 for a in run.allocated)
        assert all(a <= b + 1e-12 for a, b in zip(run.allocated, run.arrived, strict=True))
        assert run.arrived[-1] >= 1.3


def test_residency_bound_pods_stay_home_and_nothing_is_violated() -> None:
    home = pod(1000, residency=frozenset({"CN"}), residency_sources=("dataset d",))
    fleet = [node("cn", count=2), node("sg", dc="sg-a", count=2, country="SG")]
    run = fill([home], fleet, SNAP, SPREAD, until=1.0)
    assert run.placed == 2
    assert run.failed == 2
    assert run.final == 0.5
    assert run.violations == []


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="no workloads"):
        fill([], [node("a")], SNAP, BINPACK)
    with pytest.raises(ValueError, match="no ready accelerators"):
        fill([pod(500)], [], SNAP, BINPACK)


def test_report_files_and_rows(tmp_path: object) -> None:
    from pathlib import Path

    run = fill([pod(500)], [node("a")], SNAP, BINPACK, until=1.2)
    head, rows = fill_rows([run])
    assert len(head) == len(rows[0])
    assert rows[0][0] == "binpack"
    assert fill_summary(run)["allocated_at_arrived"]["100%"] == pytest.approx(1.0)
    out = Path(str(tmp_path))
    written = write_fill_reports(out, [run], "t")
    assert [p.name for p in written] == ["summary.json", "fill.png", "report.html"]
    assert (out / "fill.png").read_bytes()[:4] == b"\x89PNG"
