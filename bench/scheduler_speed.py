"""Placement scheduler speed, pure Python, one process.

(a) **round**: one ``schedule_round`` of 10,000 pending workloads on a fleet of 100,000
    accelerators (12,500 nodes of 8) in 250 data centers: H100/H800/H20/A800 and Ascend
    910B, islands of 16 nodes. The mix: inference (one device, a share of one, or 2-8 for
    tensor parallelism) with model ids from the catalog, LoRA fine-tunes, training gangs of
    8-64 devices within an island or a data center, rentals; a fifth spot, a fifth bound to
    China by residency, a third pinned to chip models or a software stack; 200 tenants under
    the packaged compliance rules (quotas included). Target: <= 1 s.
(b) **single placements**: ``Scheduler.place(..., commit=True)``, explanation included, one
    workload after another on 10,000 nodes. Target: >= 2,000 per second (kube-scheduler's
    CI floor is 270 pods/s at 5,000 nodes).

Each measurement builds a fresh fleet (not timed) and runs ``--runs`` times; the medians
are printed (for the round, wall time and this process's CPU time), with the fleet build
time, what the round placed and the load average: other work on the machine stretches
the wall time. Nothing is asserted.

    python bench/scheduler_speed.py            # 5 runs of each
    python bench/scheduler_speed.py --quick    # 2 runs, smaller (b)
    python bench/scheduler_speed.py --policy binpack --profile
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import random
import statistics
import time
from collections.abc import Callable

from suanli.models.catalog import load_models
from suanli.policy.rules import default_rules
from suanli.policy.snapshot import DataCenterView, FleetSnapshot, TenantView
from suanli.scheduler.placement import POLICIES, Policy, Scheduler
from suanli.scheduler.workload import ChipConstraint, ClusterView, NodeView, Workload
from suanli.sim.llm_workloads import serving_size

CHIPS = {  # chip: (operator cost per accelerator-hour in micro-units, domestic)
    "H100 SXM": (2_000_000, False),
    "H800 SXM": (1_900_000, False),
    "H20": (1_000_000, False),
    "A800 80GB SXM": (1_200_000, False),
    "Ascend 910B": (1_100_000, True),
}
COUNTRIES = ["CN"] * 8 + ["SG", "MY"]
NODES_PER_DC = 50
ISLAND = 16


def fleet(data_centers: int, seed: int = 7) -> tuple[list[NodeView], FleetSnapshot]:
    rng = random.Random(seed)
    nodes: list[NodeView] = []
    dcs = {}
    names = list(CHIPS)
    for d in range(data_centers):
        dc = f"dc{d:03d}"
        country = COUNTRIES[d % len(COUNTRIES)]
        owner = "state" if d % 3 == 0 else "private"
        dcs[dc] = DataCenterView(dc, country, owner)
        chips = rng.sample(names, 2)
        for i in range(NODES_PER_DC):
            chip = chips[0] if i < NODES_PER_DC // 2 else chips[1]
            half = i % (NODES_PER_DC // 2)
            island = f"{chip[:3]}-{half // ISLAND}"
            cost, domestic = CHIPS[chip]
            cost = int(cost * rng.uniform(0.9, 1.1))
            state = "ready" if rng.random() > 0.01 else "draining"
            nodes.append(
                NodeView(
                    f"{dc}-n{i:02d}", dc, country, chip, 8, island, None, domestic, cost, state
                )
            )
    return nodes, FleetSnapshot(dcs)


def workloads(count: int, seed: int = 11) -> list[Workload]:
    rng = random.Random(seed)
    sizes = {m.id: serving_size(m.id) for m in load_models() if m.kind == "chat"}
    models = sorted(m for m, size in sizes.items() if size is not None)
    tenants = [TenantView(f"t{i:03d}", "CN" if i % 4 else "SG", i % 10 != 0) for i in range(200)]
    out = []
    for i in range(count):
        r = rng.random()
        kw: dict[str, object] = {}
        if r < 0.45:
            kind = "inference"
            model = kw["model_id"] = rng.choice(models)
            kw["accelerators"], milli = sizes[model] or (1, 1000)
            if milli < 1000 and rng.random() < 0.6:
                kw["gpu_milli"] = milli
        elif r < 0.70:
            kind = "finetune"
            kw["accelerators"] = rng.choice([1, 2, 4, 8])
        elif r < 0.85:
            kind = "training"
            kw["accelerators"] = rng.choice([8, 16, 32, 64])
            kw["topology"] = rng.choice(["island", "data_center"])
        else:
            kind = "rental"
            kw["accelerators"] = rng.choice([1, 2, 4, 8])
        pin = rng.random()
        if pin < 0.2:
            kw["chips"] = ChipConstraint(frozenset(rng.sample(list(CHIPS), 2)))
        elif pin < 0.33:
            kw["chips"] = ChipConstraint(stacks=frozenset({rng.choice(["CUDA", "CANN"])}))
        if rng.random() < 0.2:
            kw["residency"] = frozenset({"CN"})
            kw["residency_sources"] = (f"ds{i % 50}",)
        out.append(
            Workload(
                f"w{i:05d}",
                rng.choice(tenants),
                kind,  # type: ignore[arg-type]
                priority="spot" if rng.random() < 0.2 else "high",
                submitted_at=float(i),
                runtime_s=rng.choice([600.0, 3600.0, 86400.0]),
                **kw,  # type: ignore[arg-type]
            )
        )
    return out


def timed(fn: Callable[[], object], profile: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    prof = cProfile.Profile() if profile else None
    start, cpu = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    fn()
    if prof:
        prof.disable()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue())
    return seconds, cpu


def bench_round(policy: Policy, runs: int, profile: bool) -> None:
    pending = workloads(10_000)
    times, cpus, builds = [], [], []
    result = None
    for run in range(runs):
        t0 = time.perf_counter()
        nodes, snapshot = fleet(250)
        cluster = ClusterView(nodes)
        builds.append(time.perf_counter() - t0)
        sched = Scheduler(cluster, default_rules(), snapshot, policy)

        def go(s: Scheduler = sched) -> None:
            nonlocal result
            result = s.schedule_round(pending, now=0.0, explain=False)

        wall, cpu = timed(go, profile and run == 0)
        times.append(wall)
        cpus.append(cpu)
        used = cluster.utilisation()
    assert result is not None
    devices = sum(p.count for p in result.placed)
    print(
        f"(a) round, policy {policy.name}: 10,000 pending on {len(nodes):,} nodes "
        f"({sum(n.accelerators for n in nodes):,} accelerators, 250 data centers)\n"
        f"    median {statistics.median(times):.3f} s over {runs} runs "
        f"(min {min(times):.3f}, max {max(times):.3f}); CPU {statistics.median(cpus):.3f} s; "
        f"fleet build {statistics.median(builds):.3f} s\n"
        f"    placed {len(result.placed):,} ({devices:,} devices, utilisation {used:.0%}), "
        f"pending {len(result.pending):,}, preempted {len(result.preempted)}, "
        f"backfilled {len(result.backfilled)}"
    )


def bench_single(policy: Policy, runs: int, count: int, profile: bool) -> None:
    pending = workloads(count, seed=23)
    rates = []
    for run in range(runs):
        nodes, snapshot = fleet(200)
        sched = Scheduler(ClusterView(nodes), default_rules(), snapshot, policy)

        def go(s: Scheduler = sched) -> None:
            for w in pending:
                s.place(w, commit=True)

        rates.append(count / timed(go, profile and run == 0)[0])
    print(
        f"(b) single placements, policy {policy.name}, explained and committed, "
        f"{len(nodes):,} nodes: median {statistics.median(rates):,.0f} per second over {runs} "
        f"runs of {count:,} (min {min(rates):,.0f}, max {max(rates):,.0f})"
    )


def machine_load() -> str:
    """The load average, when the system reports one: other work shares these CPUs."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--policy", choices=sorted(POLICIES), default="throughput")
    parser.add_argument("--profile", action="store_true", help="profile the first run of each")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    policy = POLICIES[args.policy]
    print(f"python {platform.python_version()}, {machine_load()}")
    bench_round(policy, runs, args.profile)
    bench_single(policy, runs, 1_000 if args.quick else 5_000, args.profile)


if __name__ == "__main__":
    main()
