"""Scheduler quality: Gavel's continuous multi-GPU experiment, Philly-derived jobs.

Setup (after Gavel, OSDI 2020, section 7.2): 36 V100 + 36 P100 + 36 K80 GPUs, Gavel's
measured throughputs, 6-minute rounds. Jobs arrive as a Poisson process at each rate
(jobs/hour). Each job copies a Philly job picked at random (seeded): its run time and its
GPU count (jobs of 1, 2, 4 or 8 GPUs; a few Philly jobs need more and are left out); its
job type is drawn uniformly among Gavel's 26 types that run at that GPU count, and its
steps are ``run time x throughput on V100`` (so the Philly run time is its time alone on
V100s, as Gavel derives steps). Average JCT is measured, as in Gavel, over a window of jobs
in steady state (by default jobs 4,000-4,999, the simulation running until all of them
finish while new jobs keep arriving). The mechanism ranks all (job, chip type) pairs in one
queue (Gavel's ``--enable_global_queue``); ``--per-chip-queues`` gives Gavel's default, one
ranking per chip type visited in turn, where a job may land on a chip type it has no
allocation on merely because that type is visited first.

Printed per rate: each policy's average JCT (hours) over the window with its spread over
seeds, its ratio to LAS (mean over seeds of the per-seed ratio), its average JCT divided by
the no-queueing lower bound (every job alone on its fastest chip), p99 JCT, utilisation per
chip type over the whole run, allocations per run and milliseconds per allocation. Below
the table, the best any round-based policy could do: the lower bound plus the measured wait
for the first round (jobs arriving mid-round start at the next round), over LAS. The
workload of each (rate, seed) goes to ``--out`` in Gavel's 10-field trace format and every
job's outcome to a CSV per policy.

    python bench/scheduler_quality.py --quick      # about 30 s: jobs 400-599, one seed
    python bench/scheduler_quality.py              # 3, 5, 6 jobs/h, jobs 4000-4999, 3 seeds
    python bench/scheduler_quality.py --seeds 1    # one seed (a third of the time)
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from suanli.perf.gavel import GavelMatrix, load_gavel_matrix
from suanli.scheduler.rounds import make_policy
from suanli.sim.gavel_trace import GavelTraceJob, job_template, write_gavel_trace
from suanli.sim.philly import load_philly, usable_jobs
from suanli.sim.rounds import SimConfig, Workload, simulate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FLEET = {"v100": 36, "p100": 36, "k80": 36}
REFERENCE_CHIP = "v100"
SCALE_FACTORS = (1, 2, 4, 8)
POLICIES = (
    "fifo",
    "las",
    "max_min_fairness_perf",
    "max_normalized_throughput_perf",
    "srpt_perf",
)
BASELINE = "las"


@dataclass(frozen=True)
class Task:
    rate: float
    seed: int
    policy: str
    num_jobs: int
    window: tuple[int, int]
    out: str | None
    global_queue: bool = True


def build_workload(
    matrix: GavelMatrix,
    durations: np.ndarray,
    gpus: np.ndarray,
    rate: float,
    num_jobs: int,
    seed: int,
) -> tuple[Workload, list[GavelTraceJob]]:
    """``num_jobs`` Poisson arrivals at ``rate``/hour of Philly-shaped Gavel jobs."""
    rng = random.Random(seed)
    by_sf = {
        sf: [t for t in matrix.job_types if sf in matrix.scale_factors(t, tuple(FLEET))]
        for sf in SCALE_FACTORS
    }
    chips = tuple(FLEET)
    arrival, types, sfs, steps, thr = [], [], [], [], []
    trace: list[GavelTraceJob] = []
    now = 0.0
    for i in range(num_jobs):
        if i:
            now += rng.expovariate(rate / 3600.0)
        pick = rng.randrange(len(durations))
        duration, sf = float(durations[pick]), int(gpus[pick])
        job_type = rng.choice(by_sf[sf])
        total = max(1.0, math.floor(duration * matrix.throughput(job_type, REFERENCE_CHIP, sf)))
        arrival.append(now)
        types.append(job_type)
        sfs.append(sf)
        steps.append(total)
        thr.append([matrix.throughput(job_type, c, sf) for c in chips])
        command, workdir, steps_arg, needs_data = job_template(job_type)
        trace.append(
            GavelTraceJob(
                job_type, command, workdir, steps_arg, needs_data, int(total), sf, 1.0, None, now
            )
        )
    workload = Workload.from_arrays(chips, arrival, types, sfs, steps, thr)
    return workload, trace


_CACHE: dict[str, tuple[GavelMatrix, np.ndarray, np.ndarray]] = {}


def _inputs(gavel: str, philly: str) -> tuple[GavelMatrix, np.ndarray, np.ndarray]:
    key = f"{gavel}|{philly}"
    if key not in _CACHE:
        jobs = usable_jobs(load_philly(philly), SCALE_FACTORS)
        durations = np.array([j.duration for j in jobs])
        gpus = np.array([j.num_gpus for j in jobs])
        _CACHE[key] = (load_gavel_matrix(gavel), durations, gpus)
    return _CACHE[key]


def run_task(task: Task, gavel: str, philly: str) -> dict[str, object]:
    matrix, durations, gpus = _inputs(gavel, philly)
    workload, trace = build_workload(matrix, durations, gpus, task.rate, task.num_jobs, task.seed)
    lo, hi = task.window
    window = list(range(lo, hi))
    policy = make_policy(task.policy, seed=task.seed)
    config = SimConfig(seed=task.seed, until=window, global_queue=task.global_queue)
    result = simulate(workload, FLEET, policy, config)
    summary = result.summary(window)
    waits = result.start[lo:hi] - workload.arrival[lo:hi]
    last_arrival = float(workload.arrival[-1])
    if task.out is not None:
        out = Path(task.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"rate{task.rate:g}_seed{task.seed}"
        if task.policy == BASELINE:
            write_gavel_trace(out / f"{stem}.trace", trace)
        lb = workload.lower_bound()
        with (out / f"{stem}_{task.policy}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                [
                    "job_id",
                    "job_type",
                    "scale_factor",
                    "arrival",
                    "start",
                    "finish",
                    "jct",
                    "lower_bound",
                    "chips",
                    "in_window",
                ]
            )
            for i, (job_id, arr, st, fin, used) in enumerate(result.job_lines()):
                writer.writerow(
                    [
                        job_id,
                        workload.job_type[i],
                        int(workload.scale_factor[i]),
                        f"{arr:.1f}",
                        f"{st:.1f}",
                        f"{fin:.1f}",
                        f"{fin - arr:.1f}",
                        f"{lb[i]:.1f}",
                        used,
                        int(lo <= i < hi),
                    ]
                )
    return {
        "rate": task.rate,
        "seed": task.seed,
        "policy": task.policy,
        "mean": summary.mean,
        "median": summary.median,
        "p99": summary.p99,
        "lb": summary.lower_bound_mean,
        "util": result.utilization(),
        "rounds": result.rounds,
        "allocs": result.allocations,
        "alloc_s": result.allocation_seconds,
        "wall": result.wall_seconds,
        "end_h": result.end_time / 3600.0,
        "wait": float(waits.mean()),
        "past_arrivals": result.end_time > last_arrival,
    }


def _fmt_hours(values: list[float]) -> str:
    mean = statistics.fmean(values) / 3600.0
    if len(values) < 2:
        return f"{mean:8.1f}"
    spread = statistics.stdev(values) / 3600.0
    return f"{mean:8.1f} ±{spread:5.1f}"


def report(rows: list[dict[str, object]], policies: tuple[str, ...]) -> None:
    rates = sorted({float(str(r["rate"])) for r in rows})
    for rate in rates:
        here = [r for r in rows if r["rate"] == rate]
        seeds = sorted({int(str(r["seed"])) for r in here})
        print(f"\n== {rate:g} jobs/hour, {len(seeds)} seed(s) ==")
        print(
            f"{'policy':31} {'avg JCT h':>15} {'/ LAS':>7} {'/ bound':>8} {'p99 h':>8} "
            f"{'util V/P/K':>16} {'allocs':>6} {'ms/all':>6} {'wall s':>7}"
        )
        base = {int(str(r["seed"])): float(str(r["mean"])) for r in here if r["policy"] == BASELINE}
        for policy in policies:
            mine = [r for r in here if r["policy"] == policy]
            if not mine:
                continue
            means = [float(str(r["mean"])) for r in mine]
            ratios = [
                float(str(r["mean"])) / base[int(str(r["seed"]))]
                for r in mine
                if int(str(r["seed"])) in base
            ]
            bound = statistics.fmean(float(str(r["mean"])) / float(str(r["lb"])) for r in mine)
            p99 = statistics.fmean(float(str(r["p99"])) for r in mine) / 3600.0
            utils = [r["util"] for r in mine]
            util = "/".join(
                f"{statistics.fmean(float(u[c]) for u in utils if isinstance(u, dict)):.2f}"
                for c in FLEET
            )
            allocs = sum(int(str(r["allocs"])) for r in mine)
            ms = 1e3 * sum(float(str(r["alloc_s"])) for r in mine) / max(allocs, 1)
            wall = statistics.fmean(float(str(r["wall"])) for r in mine)
            ratio = f"{statistics.fmean(ratios):7.3f}" if ratios else "      -"
            print(
                f"{policy:31} {_fmt_hours(means):>15} {ratio} {bound:8.2f} {p99:8.1f} "
                f"{util:>16} {allocs // len(mine):6d} {ms:6.1f} {wall:7.1f}"
            )
        las = [r for r in here if r["policy"] == BASELINE]
        bound = statistics.fmean(float(str(r["lb"])) / float(str(r["mean"])) for r in las)
        floor = statistics.fmean(
            (float(str(r["lb"])) + float(str(r["wait"]))) / float(str(r["mean"])) for r in las
        )
        print(
            f"floor vs LAS: lower bound / LAS {bound:.3f}; lower bound + first-round wait "
            f"({statistics.fmean(float(str(r['wait'])) for r in las):.0f} s) / LAS {floor:.3f}"
        )
        tails = sum(bool(r["past_arrivals"]) for r in here)
        if tails:
            print(f"note: {tails} run(s) outlived the generated arrivals (use --jobs)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="jobs 400-599 of 2,100, one seed")
    parser.add_argument("--rates", type=float, nargs="+", default=[3.0, 5.0, 6.0])
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--window", type=int, nargs=2, default=None, metavar=("FIRST", "END"))
    parser.add_argument("--jobs", type=int, default=None, help="jobs generated per run")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES))
    parser.add_argument(
        "--per-chip-queues",
        action="store_true",
        help="Gavel's default mechanism: one ranking per chip type instead of one for all",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--gavel", default=str(DATA / "gavel" / "simulation_throughputs.json"))
    parser.add_argument("--philly", default=str(DATA / "traces" / "philly" / "philly.csv"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scheduler_quality"))
    args = parser.parse_args(argv)
    window = tuple(args.window) if args.window else ((400, 600) if args.quick else (4000, 5000))
    num_jobs = args.jobs or (window[1] + (1500 if args.quick else 12000))
    if args.seeds is None:
        args.seeds = 1 if args.quick else 3
    if BASELINE not in args.policies:
        args.policies.insert(0, BASELINE)
    tasks = [
        Task(
            rate, seed, policy, num_jobs, (window[0], window[1]), args.out, not args.per_chip_queues
        )
        for rate in args.rates
        for seed in range(args.seeds)
        for policy in args.policies
    ]
    print(
        f"fleet {FLEET}, rounds of 360 s, rates {args.rates} jobs/h, window jobs "
        f"{window[0]}-{window[1] - 1} of {num_jobs}, {args.seeds} seed(s), "
        f"{'per-chip-type queues' if args.per_chip_queues else 'one global queue'}, "
        f"{len(tasks)} simulations on {args.workers} worker(s)",
        flush=True,
    )
    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_task, t, args.gavel, args.philly) for t in tasks]
        for done, fut in enumerate(futures, start=1):
            rows.append(fut.result())
            print(
                f"  {done}/{len(tasks)} done ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    report(rows, tuple(args.policies))
    print(
        f"\ntotal wall time {time.perf_counter() - started:.1f} s; per-job CSVs and Gavel "
        f"traces in {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
