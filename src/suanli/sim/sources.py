"""Workload sources for the simulator: the Philly trace, Alibaba's 2023 pod lists, Gavel
trace files and the LLM-era generator, each as ``SimJob``s.

**Philly** (``philly_jobs``): each job is a training gang of its ``num_gpus`` whole
devices (within one node up to 8, else within one data center); its ``duration`` is taken
as its run time on the reference chip of the simulation (``SimConfig.reference_chip``,
H100 SXM by default: the trace's load at today's speed); it arrives at its submission
offset from the trace's first job. Tenants are the trace's virtual clusters
(``vc-<hash>``), Chinese and verified; a share of them (``residency``, chosen by a seeded
draw) binds its data to China, so those jobs may not leave it.

**Alibaba 2023** (``alibaba_jobs``): the pods of a pod list through
``suanli.sim.alibaba.pod_workloads`` (``gpu_milli`` shares of one GPU kept), spread over
synthetic tenants (the trace has none; one tenant would hit the default quota); pods
without a creation and deletion time (no run time) are left out and counted. Their run
times are kept on any chip (the trace's chips mostly have no perf figures).

**Gavel** (``gavel_jobs``): a job's run time is its ``total_steps`` over the throughput of
its job type at its scale factor on a V100 in Gavel's measured matrix; that time is taken as
the run time on the reference chip.

**LLM-era** (``llm_jobs``): ``suanli.sim.llm_workloads.llm_workloads`` as they are; the
CLI scales their arrival rate to the fleet (``llm_rate``: 120 an hour per 4,096
accelerators, the generator's defaults), unless given.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from suanli.perf.gavel import load_gavel_matrix
from suanli.policy.snapshot import TenantView
from suanli.scheduler.workload import Workload
from suanli.sim.alibaba import load_pods, pod_workloads
from suanli.sim.cluster import SimJob
from suanli.sim.gavel_trace import read_gavel_trace
from suanli.sim.llm_workloads import llm_workloads
from suanli.sim.philly import arrival_offsets, load_philly, usable_jobs

__all__ = [
    "alibaba_jobs",
    "cut",
    "find_data",
    "gavel_jobs",
    "llm_jobs",
    "llm_rate",
    "philly_jobs",
    "to_jobs",
]

NODE_SIZE = 8


def find_data(relative: str) -> Path | None:
    """``shared/data/<relative>`` beside the current directory or one of its parents (the
    repository's checkout sits next to ``shared``), or ``None``."""
    here = Path.cwd().resolve()
    for base in (here, *here.parents):
        for candidate in (base / "shared" / "data" / relative, base / "data" / relative):
            if candidate.exists():
                return candidate
    return None


def cut(jobs: list[SimJob], count: int | None = None, hours: float | None = None) -> list[SimJob]:
    """The first ``count`` jobs by arrival, and only those arriving within ``hours`` of the
    first one."""
    out = sorted(jobs, key=lambda j: (j.workload.submitted_at, j.workload.id))
    if hours is not None and out:
        limit = out[0].workload.submitted_at + hours * 3600.0
        out = [j for j in out if j.workload.submitted_at <= limit]
    if count is not None:
        out = out[:count]
    return out


def philly_jobs(
    path: str | Path,
    *,
    residency: float = 0.0,
    seed: int = 0,
    count: int | None = None,
    hours: float | None = None,
) -> list[SimJob]:
    """Philly jobs as training gangs; see the module docstring."""
    raw = usable_jobs(load_philly(path))
    offsets = arrival_offsets(raw)
    clusters = sorted({j.cluster for j in raw})
    rng = random.Random(seed)
    bound = set(rng.sample(clusters, round(residency * len(clusters)))) if residency else set()
    tenants = {c: TenantView(f"vc-{c or 'none'}", "CN", True) for c in clusters}
    out: list[SimJob] = []
    indexed = sorted(range(len(raw)), key=lambda k: (offsets[k], k))
    for k in indexed:
        job = raw[k]
        extra: dict[str, object] = {}
        if job.cluster in bound:
            extra = {"residency": frozenset({"CN"}), "residency_sources": (f"{job.cluster}/data",)}
        w = Workload(
            id=f"philly-{k:06d}",
            tenant=tenants[job.cluster],
            kind="training",
            accelerators=job.num_gpus,
            topology="node" if job.num_gpus <= NODE_SIZE else "data_center",
            submitted_at=offsets[k],
            runtime_s=job.duration,
            **extra,  # type: ignore[arg-type]
        )
        out.append(SimJob(w))
        if count is not None and len(out) >= count and hours is None:
            break
    return cut(out, count, hours)


def alibaba_jobs(
    path: str | Path,
    *,
    tenants: int = 32,
    count: int | None = None,
    hours: float | None = None,
) -> tuple[list[SimJob], int]:
    """GPU pods with a run time, and how many GPU pods had none. The trace names no
    tenants: pod ``k`` (in file order) belongs to ``tenant-<k mod tenants>``."""
    workloads = pod_workloads(load_pods(path))
    people = [TenantView(f"tenant-{i:02d}", "CN", True) for i in range(max(tenants, 1))]
    timed = [
        replace(w, tenant=people[k % len(people)]) for k, w in enumerate(workloads) if w.runtime_s
    ]
    if timed:
        first = min(w.submitted_at for w in timed)
        timed = [replace(w, submitted_at=w.submitted_at - first) for w in timed]
    jobs = [SimJob(w, scales=False) for w in timed]
    return cut(jobs, count, hours), len(workloads) - len(timed)


def gavel_jobs(
    path: str | Path,
    matrix_path: str | Path,
    *,
    tenants: int = 8,
    count: int | None = None,
    hours: float | None = None,
) -> tuple[list[SimJob], int]:
    """Gavel trace jobs as training gangs, and how many had no V100 throughput."""
    matrix = load_gavel_matrix(matrix_path)
    people = [TenantView(f"tenant-{i:02d}", "CN", True) for i in range(tenants)]
    out: list[SimJob] = []
    missing = 0
    for k, job in enumerate(read_gavel_trace(path)):
        try:
            rate = matrix.throughput(job.job_type, "v100", job.scale_factor)
        except (KeyError, ValueError):
            rate = 0.0
        if rate <= 0:
            missing += 1
            continue
        w = Workload(
            id=f"gavel-{k:06d}",
            tenant=people[k % len(people)],
            kind="training",
            accelerators=job.scale_factor,
            topology="node" if job.scale_factor <= NODE_SIZE else "data_center",
            submitted_at=job.arrival_time,
            runtime_s=job.total_steps / rate,
        )
        out.append(SimJob(w))
    return cut(out, count, hours), missing


LLM_RATE_PER_ACCELERATOR = 120.0 / 4096  # the generator's default rate on its default fleet


def llm_rate(accelerators: int) -> float:
    """Arrivals per hour that load ``accelerators`` as the generator's defaults (120 an
    hour) load its own default fleet of 4,096."""
    return max(LLM_RATE_PER_ACCELERATOR * accelerators, 1.0)


def llm_jobs(
    count: int, seed: int = 0, *, hours: float | None = None, arrivals_per_hour: float = 120.0
) -> list[SimJob]:
    jobs = [SimJob(w) for w in llm_workloads(count, seed, arrivals_per_hour=arrivals_per_hour)]
    return cut(jobs, None, hours)


def to_jobs(workloads: Sequence[Workload]) -> list[SimJob]:
    return [SimJob(w) for w in workloads]
