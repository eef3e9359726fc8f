"""Placement: every filter says why, gangs are all or nothing, packing, rounds."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from suanli.errors import ConflictError
from suanli.perf.model import PerfModel
from suanli.policy.evaluate import evaluate_placement
from suanli.policy.rules import RuleSet, default_rules, parse_rules
from suanli.policy.snapshot import (
    Allocation,
    DataCenterView,
    FleetSnapshot,
    PlacementView,
    Residency,
    TenantView,
    WorkloadView,
)
from suanli.scheduler.placement import (
    BINPACK,
    COST,
    DOMESTIC_FIRST,
    FRAGMENTATION,
    SPREAD,
    THROUGHPUT,
    Policy,
    Scheduler,
    catalog_class_of,
    fragmentation,
    node_fragmentation,
    place,
    schedule_round,
)
from suanli.scheduler.workload import (
    ChipConstraint,
    ClusterView,
    NodeView,
    Placement,
    Slot,
    Workload,
)

ACME = TenantView("acme", "CN", True)
SNEAKY = TenantView("sneaky", "CN", False)  # unverified: no 3A090 chips
RULES = default_rules()
SNAP = FleetSnapshot(
    {
        "bj": DataCenterView("bj", "CN", "private"),
        "sh": DataCenterView("sh", "CN", "state"),
        "sg": DataCenterView("sg", "SG", "private"),
    }
)
# measured figures for the chip the catalog leaves blank (as a qualification run would give)
CALIBRATED = PerfModel(
    {
        ("Ascend 910B", "matmul_bf16_tflops"): 320.0,
        ("Ascend 910B", "memory_bandwidth_gbps"): 1600.0,
    }
)


def nodes(dc: str, country: str, chip: str, n: int, **kw: object) -> list[NodeView]:
    return [NodeView(f"{dc}-{chip[:4]}-{i}", dc, country, chip, 8, **kw) for i in range(n)]  # type: ignore[arg-type]


def cluster(*groups: Iterable[NodeView]) -> ClusterView:
    return ClusterView([n for g in groups for n in g])


def work(wid: str, n: int = 1, **kw: object) -> Workload:
    kw.setdefault("tenant", ACME)
    kw.setdefault("kind", "training")
    return Workload(wid, accelerators=n, **kw)  # type: ignore[arg-type]


def sched(
    c: ClusterView, policy: Policy = BINPACK, rules: RuleSet = RULES, **kw: object
) -> Scheduler:
    return Scheduler(c, rules, SNAP, policy, **kw)  # type: ignore[arg-type]


def reasons(decision_filters: object, name: str) -> dict[str, int]:
    report = decision_filters.removed_by(name)  # type: ignore[attr-defined]
    return dict(report.reasons) if report else {}


# --- filters: each says why -------------------------------------------------------------


def test_every_static_filter_names_its_reason() -> None:
    c = cluster(
        nodes("bj", "CN", "H100 SXM", 2),
        nodes("bj", "CN", "Ascend 910B", 2, domestic=True),
        nodes("sg", "SG", "H20", 2),
        [NodeView("bj-down", "bj", "CN", "H100 SXM", 8, state="draining")],
    )
    w = work(
        "w",
        kind="inference",
        model_id="llama-3.1-8b-instruct",
        chips=ChipConstraint(stacks=frozenset({"CUDA"})),
        residency=frozenset({"CN"}),
        residency_sources=("cn-dataset",),
    )
    expl = sched(c).explain(w)
    assert expl.placed
    assert reasons(expl, "state") == {"node is draining": 1}
    assert reasons(expl, "chip") == {"Ascend 910B runs CANN, not CUDA": 2}
    assert reasons(expl, "residency") == {"SG is outside CN": 2}
    assert "data in CN (cn-dataset)" in expl.request
    text = expl.text()
    assert "2 nodes: Ascend 910B runs CANN, not CUDA" in text
    assert "placed" in text
    assert "score: policy binpack: free_after 7" in text


def test_memory_topology_and_capacity_reasons() -> None:
    c = cluster(nodes("bj", "CN", "H100 SXM", 2), nodes("sh", "CN", "A10", 2))
    big = work("big", 4, kind="inference", model_id="llama-3.1-70b-instruct")
    expl = sched(c).explain(big)
    memory = reasons(expl, "memory")
    assert list(memory.values()) == [2]
    assert "4 x A10 at bf16 needs" in next(iter(memory))
    assert expl.placed  # 4 x H100 hold 70B at bf16 (2 would not: 79 GiB each of 72)

    gang = work("gang", 12)  # nodes hold 8: a node-topology gang of 12 cannot exist
    expl = sched(c).explain(gang)
    assert not expl.placed
    assert reasons(expl, "topology") == {
        "a node holds 8 x A10; 12 must share one node": 2,
        "a node holds 8 x H100 SXM; 12 must share one node": 2,
    }
    assert "topology filter" in expl.outcome

    s = sched(c)
    for i in range(4):
        assert s.place(work(f"fill{i}", 6), commit=True).placement is not None
    expl = s.explain(work("late", 4))
    assert not expl.placed
    assert reasons(expl, "capacity") == {"2 free, 4 needed": 4}


def test_fractional_capacity_reason() -> None:
    c = cluster(nodes("bj", "CN", "H20", 1))
    s = sched(c)
    for i in range(8):
        assert s.place(work(f"f{i}", gpu_milli=700, kind="inference"), commit=True).placement
    expl = s.explain(work("more", gpu_milli=400, kind="inference"))
    assert reasons(expl, "capacity") == {"no device has 400 milli free": 1}


def test_compliance_refusal_is_explained_with_the_rule() -> None:
    c = cluster(nodes("bj", "CN", "H100 SXM", 2), nodes("sh", "CN", "Ascend 910B", 1))
    expl = sched(c).explain(work("w", 2, tenant=SNEAKY, chips=ChipConstraint(frozenset({"H100 SXM"}))))  # fmt: skip
    assert not expl.placed
    ((sentence, count),) = reasons(expl, "compliance").items()
    assert count == 2
    assert sentence.startswith("[EC-CONTROLLED-UNVERIFIED] unverified tenant from CN, H100 SXM")
    assert "compliance filter" in expl.outcome
    # without the pin it lands on the chip it may use
    ok = sched(c).place(work("w2", 2, tenant=SNEAKY))
    assert ok.placement is not None
    assert ok.placement.chip == "Ascend 910B"


def test_residency_refusal_is_explained() -> None:
    c = cluster(nodes("sg", "SG", "H20", 2))
    d = sched(c).place(work("w", residency=frozenset({"CN"}), residency_sources=("patients",)))
    assert d.placement is None
    assert d.explanation.outcome.startswith("no node left after the residency filter")
    assert "SG is outside CN" in d.explanation.text()


def test_quota_is_checked_with_this_rounds_placements() -> None:
    rules = parse_rules(
        "version: t\neffective_from: 2025-01-01\n"
        "quotas:\n  - {id: Q, tenant: '*', max_accelerators: 12}\n"
    )
    c = cluster(nodes("bj", "CN", "H20", 4))
    result = schedule_round([work(f"w{i}", 4) for i in range(4)], c, BINPACK, rules, SNAP)
    assert [p.workload for p in result.placed] == ["w0", "w1", "w2"]
    (pending,) = result.pending
    assert pending.explanation is not None
    assert "acme would hold 16 accelerators; its limit is 12" in pending.explanation.text()


def test_compliance_sees_the_same_verdict_as_with_the_full_snapshot() -> None:
    held = (Allocation("acme", "bj", "H100 SXM", 250), Allocation("other", "bj", "H100 SXM", 9))
    snap = FleetSnapshot(SNAP.data_centers, (), held)
    c = cluster(nodes("bj", "CN", "H100 SXM", 2))
    s = Scheduler(c, RULES, snap, BINPACK)
    d = s.place(work("w", 8))
    full = evaluate_placement(
        WorkloadView(ACME, "w", "training", Residency()),
        PlacementView("bj", "H100 SXM", 8),
        snap,
        RULES,
        catalog_class_of,
    )
    assert not full.allowed  # 258 of 3A090.a over the example limit of 256
    assert d.placement is None
    assert full.sentence in d.explanation.text()


# --- gangs and topology ------------------------------------------------------------------


def test_gang_is_all_or_nothing() -> None:
    c = cluster(nodes("bj", "CN", "H100 SXM", 2, island="a"))
    s = sched(c)
    assert s.place(work("half", 4), commit=True).placement is not None
    free_before = [c.free_of(n.name) for n in c.nodes]
    d = s.place(work("gang", 16, topology="island"), commit=True)
    assert d.placement is None  # 12 free in the island: none taken
    assert [c.free_of(n.name) for n in c.nodes] == free_before
    assert reasons(d.explanation, "capacity") == {"island bj/a/H100 SXM has 12 free, 16 needed": 2}
    ok = s.place(work("gang12", 12, topology="island"), commit=True).placement
    assert ok is not None
    assert ok.count == 12
    assert c.utilisation() == 1.0


def test_island_gang_stays_in_one_island_and_data_center_gang_spans_them() -> None:
    c = cluster(
        nodes("bj", "CN", "H20", 3, island="a"),
        [NodeView(f"bj-b-{i}", "bj", "CN", "H20", 8, island="b") for i in range(3)],
    )
    s = sched(c)
    s.place(work("a0", 8), commit=True)  # island a keeps 16, island b 24
    island = s.place(work("i", 24, topology="island")).placement
    assert island is not None
    assert {n.split("-")[1] for n in island.nodes} == {"b"}
    too_big = s.place(work("too-big", 32, topology="island")).explanation
    assert not too_big.placed
    assert reasons(too_big, "topology") == {
        "island bj/a/H20 holds 24 in all; 32 must share one island": 3,
        "island bj/b/H20 holds 24 in all; 32 must share one island": 3,
    }
    dc = s.place(work("dc", 32, topology="data_center")).placement
    assert dc is not None
    assert dc.count == 32
    assert len(dc.nodes) == 4  # whole nodes first: the fewest nodes
    assert dc.parts == (("bj", 32),)


def test_gang_prefers_one_node_and_then_the_fewest_nodes() -> None:
    c = cluster(nodes("bj", "CN", "H20", 4, island="a"))
    s = sched(c)
    s.place(work("x", 5), commit=True)
    one = s.place(work("g", 6, topology="island")).placement
    assert one is not None
    assert len(one.nodes) == 1
    many = s.place(work("g2", 19, topology="island")).placement
    assert many is not None
    assert [len(slot.accelerators) for slot in many.slots] == [8, 8, 3]


def test_non_gang_replicas_spread_over_nodes_and_may_be_partial() -> None:
    c = cluster(nodes("bj", "CN", "H20", 2))
    s = sched(c)
    s.place(work("x", 7), commit=True)
    s.place(work("y", 7), commit=True)
    d = s.place(work("r", 3, gang=False, kind="inference"), commit=True)
    assert d.placement is not None
    assert d.placement.count == 2  # what fits, one device per replica
    assert sorted(len(slot.accelerators) for slot in d.placement.slots) == [1, 1]


# --- scores ---------------------------------------------------------------------------------


def test_binpack_and_spread() -> None:
    c = cluster(nodes("bj", "CN", "H20", 3))
    s = sched(c)
    s.place(work("a", 6), commit=True)  # node 0, 2 left
    s.place(work("b", 3), commit=True)  # node 1 (the tightest that fits), 5 left
    packed = s.place(work("w", 2)).placement
    assert packed is not None
    assert packed.nodes == ("bj-H20-0",)  # the node with exactly 2 left
    spread = sched(c, SPREAD).place(work("w", 2)).placement
    assert spread is not None
    assert spread.nodes == ("bj-H20-2",)  # an empty node


def test_heterogeneity_aware_picks_the_fastest_chip_for_the_work() -> None:
    c = cluster(nodes("bj", "CN", "H20", 1), nodes("bj", "CN", "H100 SXM", 1))
    train = sched(c, THROUGHPUT).place(work("t", 8, model_id="qwen2.5-7b-instruct", kind="finetune"))  # fmt: skip
    assert train.placement is not None
    assert train.placement.chip == "H100 SXM"  # compute-bound: 989 vs 148 TFLOPS
    serve = sched(c, THROUGHPUT).place(work("s", 1, model_id="qwen2.5-7b-instruct", kind="inference"))  # fmt: skip
    assert serve.placement is not None
    assert serve.placement.chip == "H20"  # decode is memory-bound: 4.0 vs 3.35 TB/s
    assert dict(serve.placement.score)["tokens_per_s"] > 0


def test_domestic_first_within_a_factor_of_the_best() -> None:
    c = cluster(
        nodes("bj", "CN", "H100 SXM", 1), nodes("sh", "CN", "Ascend 910B", 1, domestic=True)
    )
    w = work("t", 8, model_id="qwen2.5-7b-instruct", kind="finetune")
    # 910B at 320 x 0.35 = 112 effective TFLOPS vs 445 for H100: 4x slower
    assert sched(c, DOMESTIC_FIRST, perf=CALIBRATED).place(w).placement.chip == "H100 SXM"  # type: ignore[union-attr]
    lenient = Policy("lenient", pack="binpack", prefer="domestic", domestic_factor=5.0)
    chosen = sched(c, lenient, perf=CALIBRATED).place(w).placement
    assert chosen is not None
    assert chosen.chip == "Ascend 910B"
    assert dict(chosen.score)["domestic"] == 1.0
    serve = work("s", 1, model_id="qwen2.5-7b-instruct", kind="inference")
    # decode: 1600 x 0.7 vs 3350 x 0.8 GB/s, within a factor 1.5? no (2.4x); within 2.5: yes
    assert sched(c, DOMESTIC_FIRST, perf=CALIBRATED).place(serve).placement.chip == "H100 SXM"  # type: ignore[union-attr]
    within = Policy("d", prefer="domestic", domestic_factor=2.5)
    assert sched(c, within, perf=CALIBRATED).place(serve).placement.chip == "Ascend 910B"  # type: ignore[union-attr]


def test_cost_aware_does_not_take_an_unknown_cost_for_free() -> None:
    c = cluster(
        nodes("bj", "CN", "H20", 1, cost_micros=7_200_000),
        nodes("sg", "SG", "H100 SXM", 1),  # quoted in another currency: unknown here
    )
    w = work("w", 8, model_id="qwen2.5-7b-instruct", kind="finetune")
    found = sched(c, COST).place(w).placement
    assert found is not None
    assert found.chip == "H20"


def test_cost_aware_takes_the_cheapest_that_meets_the_deadline() -> None:
    c = cluster(
        nodes("bj", "CN", "H100 SXM", 1, cost_micros=2_000_000),
        nodes("sh", "CN", "H20", 1, cost_micros=200_000),
    )
    m, tokens = "qwen2.5-7b-instruct", 1e9
    perf = PerfModel()
    h20 = perf.throughput("finetune", m, "H20", count=8).tokens_per_s
    h100 = perf.throughput("finetune", m, "H100 SXM", count=8).tokens_per_s
    assert h20
    assert h100

    def chosen(**kw: object) -> Placement:
        w = work("w", 8, model_id=m, kind="finetune", tokens=tokens, **kw)
        found = sched(c, COST).place(w).placement
        assert found is not None
        return found

    # per unit of work the H20 is cheaper: 0.2 per hour for 148 TFLOPS vs 2.0 for 989
    assert chosen().chip == "H20"
    # a deadline the H20 misses and the H100 meets
    rushed = chosen(deadline=tokens / h20 / 2)
    assert rushed.chip == "H100 SXM"
    assert dict(rushed.score)["finish"] == pytest.approx(tokens / h100)
    assert dict(rushed.score)["cost_per_hour"] == 2.0
    # a deadline nobody meets: the fastest
    assert chosen(deadline=tokens / h100 / 2).chip == "H100 SXM"


def naive_first_fit(c: ClusterView, requests: list[int]) -> None:
    for i, milli in enumerate(requests):
        for n in c.nodes:
            free = c.free_of(n.name)
            a = next((a for a, f in enumerate(free) if f >= milli), None)
            if a is not None:
                w = work(f"ff{i}", gpu_milli=milli, kind="inference")
                c.allocate(w, Placement(w.id, n.chip, (Slot(n.name, (a,), milli),), ((n.data_center, 1),)))  # fmt: skip
                break


def test_fragmentation_aware_packing_beats_first_fit() -> None:
    rng = random.Random(3)
    requests = [rng.choice([100, 200, 250, 300, 500, 700]) for _ in range(40)]
    target = ((1, 500, 0.4), (1, 1000, 0.3), (2, 1000, 0.2), (4, 1000, 0.1))
    fgd_cluster = cluster(nodes("bj", "CN", "H20", 4))
    s = sched(fgd_cluster, Policy("fgd", pack="fragmentation", target=target))
    for i, milli in enumerate(requests):
        assert s.place(work(f"w{i}", gpu_milli=milli, kind="inference"), commit=True).placement
    ff_cluster = cluster(nodes("bj", "CN", "H20", 4))
    naive_first_fit(ff_cluster, requests)
    assert fgd_cluster.utilisation() == pytest.approx(ff_cluster.utilisation())
    assert fragmentation(fgd_cluster, target) < fragmentation(ff_cluster, target)


def test_node_fragmentation_measure() -> None:
    target = ((1, 500, 0.5), (2, 1000, 0.5))
    # free 300 on one device, 1000 on another: a 500 share cannot use the 300; a 2-device
    # request cannot run at all (one whole device): all 1300 are fragments for it
    assert node_fragmentation((300, 1000), target) == pytest.approx(0.5 * 300 + 0.5 * 1300)
    assert node_fragmentation((1000, 1000), target) == 0
    assert FRAGMENTATION.pack == "fragmentation"


# --- rounds: order, backfilling, preemption -----------------------------------------------


def test_round_places_high_before_spot_then_in_submission_order() -> None:
    c = cluster(nodes("bj", "CN", "H20", 1))
    pending = [
        work("spot-early", 8, priority="spot", submitted_at=0),
        work("high-late", 8, priority="high", submitted_at=5),
    ]
    result = schedule_round(pending, c, BINPACK, RULES, SNAP)
    assert [p.workload for p in result.placed] == ["high-late"]
    assert [p.workload for p in result.pending] == ["spot-early"]


def test_preemption_stops_spot_work_only() -> None:
    c = cluster(nodes("bj", "CN", "H20", 2))
    s = sched(c)
    s.place(work("high-a", 6, priority="high"), commit=True)
    s.place(work("spot-a", 2, priority="spot", submitted_at=1), commit=True)
    s.place(work("high-b", 5, priority="high"), commit=True)
    s.place(work("spot-b", 3, priority="spot", submitted_at=2), commit=True)
    result = s.schedule_round([work("urgent", 3, priority="high", submitted_at=9)])
    assert [p.workload for p in result.placed] == ["urgent"]
    assert [v.victim for v in result.preempted] == ["spot-b"]  # the fewest devices freed
    assert {v.by for v in result.preempted} == {"urgent"}
    assert set(c.running) == {"high-a", "spot-a", "high-b", "urgent"}
    # spot work cannot preempt; high work is never preempted
    later = s.schedule_round([work("spot-c", 2, priority="spot"), work("high-c", 2)])
    assert [v.victim for v in later.preempted] == ["spot-a"]
    assert [p.workload for p in later.placed] == ["high-c"]
    assert [p.workload for p in later.pending] == ["spot-c"]
    assert set(c.running) == {"high-a", "high-b", "urgent", "high-c"}
    again = s.schedule_round([work("high-d", 1)])
    assert again.preempted == ()
    assert again.placed == ()


def test_backfill_does_not_delay_the_head_job() -> None:
    c = cluster(nodes("bj", "CN", "H20", 2))
    s = sched(c)
    s.place(work("r1", 6, runtime_s=100), commit=True)  # node 0: 2 free until t=100
    s.place(work("r2", 4, runtime_s=500), commit=True)  # node 1: 4 free until t=500
    head = work("head", 8, submitted_at=1)  # waits for node 0 at t=100
    long_small = work("long", 2, submitted_at=2, runtime_s=1000)
    short_small = work("short", 2, submitted_at=3, runtime_s=50)
    unknown = work("unknown", 2, submitted_at=4)
    result = s.schedule_round([head, long_small, short_small, unknown], now=0)
    assert result.reservation is not None
    assert result.reservation.workload == "head"
    assert result.reservation.nodes == ("bj-H20-0",)
    assert result.reservation.start == 100
    placed = {p.workload: p for p in result.placed}
    assert placed["long"].nodes == ("bj-H20-1",)  # off the reserved node
    assert placed["short"].nodes == ("bj-H20-0",)  # ends at 50, before the head starts
    assert placed["unknown"].nodes == ("bj-H20-1",)
    assert set(result.backfilled) == {"long", "short", "unknown"}
    # the head's node frees at t=100 exactly as reserved
    s.cluster.release("r1")
    s.cluster.release("short")
    assert s.place(work("head", 8)).placement.nodes == ("bj-H20-0",)  # type: ignore[union-attr]


def test_backfill_keeps_long_jobs_off_the_reserved_nodes() -> None:
    c = cluster(nodes("bj", "CN", "H20", 2))
    s = sched(c)
    s.place(work("r1", 6, runtime_s=100), commit=True)  # node 0: 2 free until t=100
    s.place(work("r2", 8, runtime_s=500), commit=True)  # node 1: full until t=500
    pending = [
        work("head", 8, submitted_at=1),
        work("long", 2, submitted_at=2, runtime_s=1000),
        work("short", 2, submitted_at=3, runtime_s=50),
    ]
    result = s.schedule_round(pending, now=0)
    assert [p.workload for p in result.placed] == ["short"]
    waiting = {p.workload: p for p in result.pending}
    assert set(waiting) == {"head", "long"}
    long = waiting["long"].explanation
    assert long is not None
    assert reasons(long, "reservation") == {"held for the job at the head of the queue": 1}
    assert "reservation filter" in long.outcome


def test_reservation_needs_known_end_times() -> None:
    c = cluster(nodes("bj", "CN", "H20", 1))
    s = sched(c)
    s.place(work("forever", 8), commit=True)  # no runtime: never known to end
    result = s.schedule_round([work("w", 8)])
    assert result.reservation is None
    assert result.pending[0].reason.startswith("no node left after the capacity filter")


# --- the cluster's indexes ------------------------------------------------------------------


def test_allocate_and_release_keep_the_indexes() -> None:
    c = cluster(nodes("bj", "CN", "H20", 2))
    s = sched(c)
    d = s.place(work("a", 3), commit=True)
    assert d.placement is not None
    p = c.node_pool[0]
    assert c.hist[p].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 1]
    assert int(c.maxwhole[p]) == 8
    with pytest.raises(ConflictError):
        c.allocate(work("b", 8), Placement("b", "H20", (Slot("bj-H20-0", tuple(range(8))),), (("bj", 8),)))  # fmt: skip
    c.release("a")
    assert c.hist[p].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 2]
    assert c.utilisation() == 0


def test_module_level_place_does_not_change_the_cluster() -> None:
    c = cluster(nodes("bj", "CN", "H20", 1))
    d = place(work("a", 8), c, BINPACK, RULES, SNAP)
    assert d.placement is not None
    assert c.utilisation() == 0
    assert d.explanation.to_json()["placed"] is True


def test_an_empty_fleet_places_nothing() -> None:
    c = ClusterView([])
    assert c.utilisation() == 0.0
    decision = sched(c).place(work("w", 1))
    assert decision.placement is None
    assert sched(c).schedule_round([work("w", 1)]).placed == ()
