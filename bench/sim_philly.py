"""Simulator speed on the whole Philly trace: 82,247 jobs on a 2,000-GPU mixed fleet.

Every job keeps its submission time, run time and GPU count from the trace (up to 128
GPUs). All jobs are one Gavel job type (``--job-type``, default ResNet-50 at batch size
64); a job on ``g`` GPUs runs ``g`` times its one-GPU throughput, and its steps are its run
time times its V100 throughput, so it takes exactly its trace run time alone on V100s and
longer on P100s. Fleet: 1,000 V100 + 1,000 P100, rounds of 6 minutes.

For each policy (default ``las`` and ``max_normalized_throughput_perf``) the script prints
the wall time of the simulation (target: 60 s or less), JCT statistics, makespan and
utilisation; a line per 10% of jobs finished goes to stderr while it runs.

    python bench/sim_philly.py
    python bench/sim_philly.py --policies las srpt_perf --out bench/results/philly
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from suanli.perf.gavel import load_gavel_matrix
from suanli.scheduler.rounds import make_policy
from suanli.sim.philly import arrival_offsets, load_philly, usable_jobs
from suanli.sim.rounds import SimConfig, Workload, simulate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FLEET = {"v100": 1000, "p100": 1000}


def build_workload(philly: str, gavel: str, job_type: str) -> Workload:
    jobs = usable_jobs(load_philly(philly))
    matrix = load_gavel_matrix(gavel)
    per_gpu = np.array([matrix.throughput(job_type, chip, 1) for chip in FLEET])
    gpus = np.array([j.num_gpus for j in jobs], dtype=np.float64)
    durations = np.array([j.duration for j in jobs])
    return Workload.from_arrays(
        chips=tuple(FLEET),
        arrival=arrival_offsets(jobs),
        job_type=[job_type] * len(jobs),
        scale_factor=gpus.astype(np.int64),
        total_steps=durations * per_gpu[0] * gpus,
        throughput=gpus[:, None] * per_gpu[None, :],
    )


class TenPercent:
    """Prints a line to stderr each time another 10% of the jobs have finished."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.next = 0.1
        self.started = time.perf_counter()

    def __call__(self, share: float) -> None:
        while share >= self.next - 1e-9 and self.next <= 1.0 + 1e-9:
            elapsed = time.perf_counter() - self.started
            print(
                f"  {self.label}: {self.next:4.0%} of jobs done ({elapsed:5.1f} s)",
                file=sys.stderr,
                flush=True,
            )
            self.next += 0.1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policies", nargs="+", default=["las", "max_normalized_throughput_perf"])
    parser.add_argument("--job-type", default="ResNet-50 (batch size 64)")
    parser.add_argument("--gavel", default=str(DATA / "gavel" / "simulation_throughputs.json"))
    parser.add_argument("--philly", default=str(DATA / "traces" / "philly" / "philly.csv"))
    parser.add_argument("--out", default=None, help="folder for a per-job CSV per policy")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    workload = build_workload(args.philly, args.gavel, args.job_type)
    span_days = float(workload.arrival.max()) / 86400.0
    print(
        f"{workload.size:,} jobs over {span_days:.1f} days, fleet {FLEET}, job type "
        f"{args.job_type!r}; loaded in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    lb = workload.lower_bound()
    print(f"no-queueing lower bound: mean JCT {lb.mean() / 3600:.2f} h", flush=True)
    header = (
        f"{'policy':31} {'wall s':>7} {'rounds':>7} {'LPs':>6} {'mean JCT h':>11} "
        f"{'median h':>9} {'p99 h':>8} {'/ bound':>8} {'makespan d':>11} {'util V/P':>10}"
    )
    lines = []
    for name in args.policies:
        policy = make_policy(name)
        result = simulate(workload, FLEET, policy, SimConfig(progress=TenPercent(name)))
        s = result.summary()
        util = "/".join(f"{u:.2f}" for u in result.utilization().values())
        lines.append(
            f"{name:31} {result.wall_seconds:7.1f} {result.rounds:7d} {result.allocations:6d} "
            f"{s.mean / 3600:11.2f} {s.median / 3600:9.2f} {s.p99 / 3600:8.1f} "
            f"{s.vs_lower_bound:8.2f} {result.makespan() / 86400:11.1f} {util:>10}"
        )
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            with (out / f"philly_{name}.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["job_id", "arrival", "start", "finish", "chips"])
                for job_id, arr, st, fin, used in result.job_lines():
                    writer.writerow([job_id, f"{arr:.1f}", f"{st:.1f}", f"{fin:.1f}", used])
    print(header)
    print("\n".join(lines))
    print(f"total wall time {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
