"""The Alibaba 2023 trace loader and the LLM-era workload generator, scheduled."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from suanli.models.catalog import load_models
from suanli.policy.rules import default_rules, parse_rules
from suanli.policy.snapshot import DataCenterView, FleetSnapshot
from suanli.scheduler.placement import FRAGMENTATION, THROUGHPUT, Scheduler, fragmentation
from suanli.scheduler.workload import ClusterView
from suanli.sim.alibaba import load_nodes, load_pods, pod_workloads
from suanli.sim.llm_workloads import LlmMix, llm_fleet, llm_workloads, serving_size

TRACE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "traces"
ALIBABA = TRACE / "alibaba-gpu-2023"
needs_trace = pytest.mark.skipif(not ALIBABA.exists(), reason="Alibaba 2023 trace not present")
SNAP = FleetSnapshot({"openb": DataCenterView("openb", "CN", "private")})


@needs_trace
def test_node_list_counts_match_the_trace_readme() -> None:
    fleet = load_nodes(ALIBABA / "openb_node_list_all_node.csv")
    assert fleet.total_nodes == 1523
    assert fleet.gpus == 6212
    assert fleet.cpu_only == 310
    chips = Counter(n.chip for n in fleet.nodes)
    assert chips == {
        "G2": 549,
        "Tesla T4": 404,
        "Tesla P100 16GB": 134,
        "Tesla V100 SXM2": 55,
        "G3": 39,
        "V100M32": 30,
        "A10": 2,
    }
    islands = load_nodes(ALIBABA / "openb_node_list_all_node.csv", island_size=8)
    assert len({n.island for n in islands.nodes if n.chip == "G2"}) == 69  # ceil(549 / 8)


@needs_trace
def test_pod_lists_become_workloads() -> None:
    pods = load_pods(ALIBABA / "openb_pod_list_default.csv")
    assert len(pods) == 8152
    first = pods[1]
    assert (first.name, first.num_gpu, first.gpu_milli, first.qos) == ("openb-pod-0001", 1, 460, "LS")  # fmt: skip
    assert (first.creation, first.deletion) == (427061.0, 12902960.0)
    work = pod_workloads(pods)
    assert len(work) == 8152 - 1088  # CPU-only pods left out
    shares = [w for w in work if w.gpu_milli < 1000]
    assert len(shares) == 3078
    assert Counter(w.accelerators for w in work if w.whole) == {1: 3911, 2: 16, 4: 15, 8: 44}
    assert Counter(w.priority for w in work)["spot"] == sum(1 for p in pods if p.qos == "BE" and p.num_gpu)  # fmt: skip
    assert work[1].runtime_s == 12902960.0 - 427061.0
    assert work[1].kind == "inference"


@needs_trace
def test_gpu_spec_becomes_a_chip_constraint_and_the_short_pod_list_loads() -> None:
    work = pod_workloads(load_pods(ALIBABA / "openb_pod_list_gpuspec20.csv"))
    pinned = [w for w in work if w.chips.models]
    assert len(pinned) == 1444
    assert Counter(w.chips.models for w in pinned)[frozenset({"Tesla T4"})] == 718
    multi = load_pods(ALIBABA / "openb_pod_list_multigpu20.csv")  # five columns only
    assert len(multi) == 8324
    assert {p.qos for p in multi} == {""}


@needs_trace
def test_a_slice_of_the_trace_schedules_on_its_fleet() -> None:
    fleet = load_nodes(ALIBABA / "openb_node_list_all_node.csv")
    pods = load_pods(ALIBABA / "openb_pod_list_gpuspec20.csv")
    work = pod_workloads(pods)[:1500]
    cluster = ClusterView(fleet.nodes)
    # the operator's own cluster: no tenant quota (the example rules cap a tenant at 512)
    rules = parse_rules("version: trace\neffective_from: 2023-01-01\n")
    result = Scheduler(cluster, rules, SNAP, FRAGMENTATION).schedule_round(work)
    assert len(result.placed) + len(result.pending) == len(work)
    assert len(result.placed) > 1400
    capped = Scheduler(ClusterView(fleet.nodes), default_rules(), SNAP).schedule_round(work)
    held = sum(p.count for p in capped.placed)  # a share of a device counts as one
    assert 500 < held <= 512
    over = [p.reason for p in capped.pending if "[QUOTA-DEFAULT] alibaba would hold" in p.reason]
    assert len(over) > 900
    assert "would hold 513 accelerators; its limit is 512" in over[0]
    for placement in result.placed:
        (slot,) = placement.slots
        assert slot.node in cluster.index
    assert fragmentation(cluster) >= 0


def test_llm_workloads_are_seeded_and_use_catalog_models() -> None:
    a = llm_workloads(300, seed=4)
    assert a == llm_workloads(300, seed=4)
    assert a != llm_workloads(300, seed=5)
    ids = set(load_models().ids())
    assert {w.model_id for w in a if w.model_id} <= ids
    kinds = Counter(w.kind for w in a)
    assert set(kinds) == {"inference", "finetune", "training", "rental"}
    assert kinds["inference"] > kinds["training"]
    assert any(w.residency == frozenset({"CN"}) for w in a)
    assert any(w.priority == "spot" for w in a)
    assert any(w.gpu_milli < 1000 for w in a)
    assert all(w.topology in ("island", "data_center") for w in a if w.kind == "training")
    times = [w.submitted_at for w in a]
    assert times == sorted(times)


def test_serving_size_is_the_smallest_fit() -> None:
    assert serving_size("qwen2.5-0.5b-instruct") == (1, 250)
    assert serving_size("llama-3.1-70b-instruct") == (4, 1000)
    assert serving_size("deepseek-v3") is None  # 671B at bf16 does not fit 8 x 80 GiB


def test_generated_work_schedules_on_a_generated_fleet() -> None:
    nodes, snapshot = llm_fleet(data_centers=4, nodes_per_chip=16, seed=2)
    assert {n.chip for n in nodes} <= {"H100 SXM", "H800 SXM", "H20", "Ascend 910B"}
    assert all(n.domestic == (n.chip == "Ascend 910B") for n in nodes)
    assert all(snapshot.data_centers[n.data_center].country == "CN" for n in nodes if n.domestic)
    work = llm_workloads(200, seed=2, mix=LlmMix(training=0.05))
    cluster = ClusterView(nodes)
    result = Scheduler(cluster, default_rules(), snapshot, THROUGHPUT).schedule_round(work)
    assert len(result.placed) > 100
    for pending in result.pending:
        assert pending.explanation is not None
        assert pending.reason == pending.explanation.outcome
