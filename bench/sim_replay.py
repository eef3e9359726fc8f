"""Speed of the node-level event simulator (``suanli.sim.cluster``) on whole traces.

1. Philly: all 82,247 usable jobs, as training gangs with their durations on the reference
   chip (H100 SXM), on the generated mixed fleet of 2,000 accelerators (Ascend 910B and H20
   in a state-owned data center in China, H800 in a private one, H100 in Singapore); 20% of
   the virtual clusters keep their data in China.
2. Alibaba 2023: the default pod list (``openb_pod_list_default.csv``) on the trace's own
   node list, GPU shares kept.

For each it prints the wall time of the simulation (the Philly target: a couple of minutes
at most), the scheduler's time per round and the headline metrics; nothing is asserted.

    python bench/sim_replay.py
    python bench/sim_replay.py --policy domestic-first --out bench/results/sim
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from suanli.domain.fleet import parse_text
from suanli.policy.snapshot import DataCenterView, FleetSnapshot
from suanli.scheduler.placement import POLICIES
from suanli.sim.alibaba import load_nodes
from suanli.sim.cluster import SimConfig, SimRun, simulate
from suanli.sim.fleetfile import fleet_from_parsed, generated_fleet_text
from suanli.sim.report import headline, summarize, write_reports
from suanli.sim.sources import alibaba_jobs, philly_jobs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "traces"
SHOWN = (
    "jobs", "jobs finished", "jobs never started", "JCT mean", "JCT median", "JCT p99",
    "queueing delay p99", "makespan", "utilization (all)", "domestic usage share",
    "fairness: Jain's index", "compliance violations", "scheduler ms/round median",
    "scheduler ms/round p99", "scheduler ms/round max",
)  # fmt: skip


def show(title: str, run: SimRun, load_s: float, out: Path | None) -> None:
    summary = summarize(run)
    print(f"\n{title}")
    print(f"  load: {load_s:.1f} s   simulate: {run.wall_s:.1f} s   rounds: {len(run.round_times)}")
    for name, _, shown in headline(summary):
        if name in SHOWN:
            print(f"  {name:28s} {shown}")
    if out is not None:
        write_reports(out / title.split()[0].lower(), [run], [summary], title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--philly", default=str(DATA / "philly" / "philly.csv"))
    parser.add_argument("--alibaba", default=str(DATA / "alibaba-gpu-2023"))
    parser.add_argument("--policy", default="throughput", choices=sorted(POLICIES))
    parser.add_argument("--gpus", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None, help="folder for the reports")
    args = parser.parse_args(argv)
    config = SimConfig(policy=POLICIES[args.policy])

    tick = time.perf_counter()
    fleet = fleet_from_parsed(parse_text(generated_fleet_text(args.gpus)))
    jobs = philly_jobs(args.philly, residency=0.2)
    load = time.perf_counter() - tick
    run = simulate(jobs, list(fleet.nodes), fleet.snapshot, config, label="philly")
    title = f"Philly full replay ({len(jobs):,} jobs, {args.gpus:,} accelerators)"
    show(title, run, load, args.out)

    tick = time.perf_counter()
    base = Path(args.alibaba)
    nodes = load_nodes(base / "openb_node_list_all_node.csv")
    pods, _ = alibaba_jobs(base / "openb_pod_list_default.csv")
    snapshot = FleetSnapshot({"openb": DataCenterView("openb", "CN", "private")})
    load = time.perf_counter() - tick
    alibaba_config = replace(config, policy=POLICIES["fragmentation"])
    run = simulate(pods, list(nodes.nodes), snapshot, alibaba_config, label="alibaba")
    title = f"Alibaba default pod list ({len(pods):,} pods, {nodes.gpus:,} GPUs)"
    show(title, run, load, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
