"""What the scheduler remembers to go fast: each answer must be the one it would get anew.

The compliance gate answers from what the engine said before (a place allowed, a quota's
room, refusals); the scheduler shares filter masks between requests alike and pauses the
cyclic garbage collector during a round.
"""

from __future__ import annotations

import gc
import random

import pytest

from suanli.policy.evaluate import evaluate_placement
from suanli.policy.rules import RuleSet, parse_rules
from suanli.policy.snapshot import (
    Allocation,
    FleetSnapshot,
    PlacementView,
    Residency,
    TenantView,
    WorkloadView,
)
from suanli.scheduler.gate import ComplianceGate, catalog_class_of
from suanli.scheduler.placement import BINPACK, THROUGHPUT, Scheduler, schedule_round
from suanli.scheduler.workload import Placement, Slot, cover
from tests.scheduler.test_placement import ACME, RULES, SNAP, cluster, nodes, work

QUOTA_12 = parse_rules(
    "version: t\neffective_from: 2025-01-01\n"
    "quotas:\n  - {id: Q, tenant: '*', max_accelerators: 12}\n"
)


def gate(rules: RuleSet = RULES, snapshot: FleetSnapshot = SNAP) -> ComplianceGate:
    c = cluster(
        nodes("bj", "CN", "H20", 1),
        nodes("sh", "CN", "H20", 1),
        nodes("sg", "SG", "H20", 1),
        nodes("bj", "CN", "H100 SXM", 1),
    )
    return ComplianceGate(c, rules, snapshot, catalog_class_of)


# --- the compliance gate ---------------------------------------------------------------------


def test_gate_room_answers_without_asking_and_a_hold_past_it_asks_again() -> None:
    g = gate(QUOTA_12)
    w = work("w")
    assert g.refusal(w, "bj", "H20", 2) is None
    asked = g.asked
    assert asked >= 1
    assert g.refusal(w, "bj", "H20", 2) is None  # the same question
    assert g.refusal(w, "sh", "H20", 1) is None  # same country, asks less: allowed too
    assert g.asked == asked
    g.hold("acme", "bj", "H20", 10)  # now holds 10 of 12: past what the room covered
    refusal = g.refusal(w, "bj", "H20", 4)
    assert g.asked > asked  # the hold made the engine's earlier answer too small
    assert refusal is not None
    assert "acme would hold 14 accelerators; its limit is 12" in refusal
    assert g.refusal(w, "bj", "H20", 2) is None  # 12: exactly the limit
    g.hold("acme", "bj", "H20", -10)  # released: allowed again
    assert g.refusal(w, "bj", "H20", 4) is None


def test_gate_place_knowledge_is_per_residency() -> None:
    g = gate()
    free = work("free")
    bound = work("bound", residency=frozenset({"SG"}), residency_sources=("ledger",))
    assert g.refusal(free, "bj", "H20", 1) is None
    refusal = g.refusal(bound, "bj", "H20", 1)
    assert refusal is not None
    assert "ledger must stay in SG" in refusal
    assert g.refusal(bound, "sg", "H20", 1) is None
    assert g.refusal(free, "sg", "H20", 1) is None


def test_gate_unknown_data_center_is_refused_even_with_room() -> None:
    g = gate()
    w = work("w")
    assert g.refusal(w, "bj", "H20", 1) is None
    c = g.cluster
    snap = FleetSnapshot({"bj": SNAP.data_centers["bj"]})
    g2 = ComplianceGate(c, RULES, snap, catalog_class_of)
    assert g2.refusal(w, "bj", "H20", 1) is None
    refusal = g2.refusal(w, "sh", "H20", 1)  # same country, but the engine does not know sh
    assert refusal is not None
    assert "not in the compliance snapshot" in refusal


@pytest.mark.parametrize("seed", range(6))
def test_gate_agrees_with_the_engine_on_every_question(seed: int) -> None:
    """Random questions and holds: the gate's answer is the engine's on the whole state."""
    rng = random.Random(seed)
    rules = parse_rules(
        "version: t\neffective_from: 2025-01-01\n"
        "export_control:\n  default_id: D\n  default: allow\n  rules:\n"
        "    - {id: EC, chip_classes: [3A090.a], tenant_verified: false, outcome: deny}\n"
        "quotas:\n"
        "  - {id: QA, tenant: acme, max_accelerators: 40, per_chip_class: {3A090.a: 16},"
        " per_chip: {H20: 24}}\n"
        "  - {id: QB, tenant: '*', max_accelerators: 30}\n"
    )
    tenants = [ACME, TenantView("bob", "SG", False), TenantView("cid", "CN", True)]
    held = [Allocation("acme", "sh", "H20", 3)]
    snapshot = FleetSnapshot(SNAP.data_centers, (), tuple(held))
    g = gate(rules, snapshot)
    holdings = list(held)
    for i in range(300):
        tenant = rng.choice(tenants)
        residency = rng.choice([None, frozenset({"CN"}), frozenset({"SG"}), frozenset()])
        sources = (f"d{rng.randrange(3)}",) if residency is not None else ()
        w = work(f"w{i}", tenant=tenant, residency=residency, residency_sources=sources)
        dc, chip = rng.choice(["bj", "sh", "sg"]), rng.choice(["H20", "H100 SXM"])
        count = rng.randint(1, 12)
        truth = evaluate_placement(
            WorkloadView(tenant, w.id, w.kind, Residency(residency, sources)),
            PlacementView(dc, chip, count),
            FleetSnapshot(SNAP.data_centers, (), tuple(holdings)),
            rules,
            catalog_class_of,
        )
        answer = g.refusal(w, dc, chip, count)
        assert (answer is None) == truth.allowed, (i, tenant.name, dc, chip, count, answer)
        if answer is None and rng.random() < 0.6:
            g.hold(tenant.name, dc, chip, count)
            holdings.append(Allocation(tenant.name, dc, chip, count))
        elif rng.random() < 0.2 and holdings:
            gone = holdings.pop(rng.randrange(len(holdings)))
            g.hold(gone.tenant, gone.data_center, gone.chip, -gone.count)
    assert g.asked < 300  # earlier answers stood for some questions


# --- rounds ----------------------------------------------------------------------------------


def test_quota_room_never_lets_a_round_exceed_the_quota() -> None:
    c = cluster(nodes("bj", "CN", "H20", 4), nodes("sh", "CN", "H20", 4))
    pending = [work(f"w{i}", 1 + i % 3, submitted_at=i) for i in range(20)]
    result = schedule_round(pending, c, BINPACK, QUOTA_12, SNAP)
    assert sum(p.count for p in result.placed) == 12
    assert all(p.reason.startswith("no node left after the compliance") for p in result.pending)


def test_a_failed_gang_fits_once_its_island_frees_up() -> None:
    c = cluster(nodes("bj", "CN", "H20", 2, island="a"))
    s = Scheduler(c, RULES, SNAP, THROUGHPUT)
    s.place(work("small", 4, runtime_s=10), commit=True)
    gang = work("gang", 16, topology="island", submitted_at=1)
    first = s.schedule_round([gang, work("other", 16, topology="island", submitted_at=2)])
    assert first.placed == ()
    c.release("small")
    again = s.schedule_round([gang])
    assert [p.workload for p in again.placed] == ["gang"]


def test_requests_alike_share_masks_but_not_rates() -> None:
    c = cluster(nodes("bj", "CN", "H20", 1), nodes("bj", "CN", "H100 SXM", 1))
    s = Scheduler(c, RULES, SNAP, THROUGHPUT)
    train = s.place(work("t", 8, kind="training")).placement
    tune = s.place(work("f", 8, kind="finetune")).placement
    assert train is not None
    assert tune is not None
    assert s._shape(work("t", 8, kind="training")).mask is s._shape(work("f", 8)).mask
    refused = s.place(work("u", 8, tenant=TenantView("u", "CN", False))).placement
    assert refused is not None
    assert refused.chip == "H20"  # unverified: no 3A090 chip
    assert s._shape(work("t", 8)).mask.all()  # the refusal left the shared mask alone


@pytest.mark.parametrize("enabled", [True, False])
def test_a_round_leaves_the_garbage_collector_as_it_found_it(enabled: bool) -> None:
    c = cluster(nodes("bj", "CN", "H20", 1))
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        schedule_round([work("a", 2), work("b", 8)], c, BINPACK, RULES, SNAP)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_cover_takes_the_fullest_nodes_then_the_tightest_to_finish() -> None:
    assert cover([(8, 1), (8, 2), (3, 3), (5, 4)], 19) == [(1, 8), (2, 8), (3, 3)]
    assert cover([(8, 1), (2, 2)], 12) == [(1, 8), (2, 2)]  # not enough: all of it
    assert cover([], 4) == []


@pytest.mark.parametrize("seed", range(4))
def test_the_cluster_indexes_follow_random_allocations(seed: int) -> None:
    """After any allocate / release, every per-node and per-pool figure is what a fresh
    count of the free devices gives."""
    rng = random.Random(seed)
    c = cluster(nodes("bj", "CN", "H20", 6, island="a"), nodes("sg", "SG", "H20", 3))
    running: list[str] = []
    for step in range(400):
        if running and rng.random() < 0.4:
            c.release(running.pop(rng.randrange(len(running))))
        else:
            i = rng.randrange(len(c.nodes))
            free = c.free[i]
            milli = rng.choice([1000, 1000, 500, 250])
            devices = tuple(a for a, f in enumerate(free) if f >= milli)
            if not devices:
                continue
            take = devices[: rng.randint(1, len(devices))] if milli == 1000 else devices[:1]
            w = work(f"w{step}", len(take)) if milli == 1000 else work(f"w{step}", gpu_milli=milli)
            slot = Slot(c.nodes[i].name, take, milli)
            c.allocate(w, Placement(w.id, "H20", (slot,), ((c.nodes[i].data_center, len(take)),)))
            running.append(w.id)
        for p, members in enumerate(c.pools.members):
            frees = [c.free[n] for n in members]
            whole = [f.count(1000) for f in frees]
            assert int(c.maxwhole[p]) == max(whole)
            assert int(c.maxfree[p]) == max(max(f) for f in frees)
            partial = [max([x for x in f if 0 < x < 1000], default=0) for f in frees]
            assert int(c.partial_max[p]) == max(partial)
            assert c.hist[p].tolist() == [whole.count(k) for k in range(9)]
            assert int(c.whole_total[p]) == sum(whole)
        for n, f in enumerate(c.free):
            assert c.top_free[n] == max(f) == int(c.node_max[n])
            assert int(c.node_partial[n]) == max([x for x in f if 0 < x < 1000], default=0)
            assert c.sig[n] == tuple(sorted(f))


def test_a_round_keeps_objects_frozen_before_it_frozen() -> None:
    c = cluster(nodes("bj", "CN", "H20", 1))
    was = gc.isenabled()
    gc.enable()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        schedule_round([work("a", 2)], c, BINPACK, RULES, SNAP)
        assert gc.get_freeze_count() > frozen // 2  # still frozen (a few may have died)
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()
