"""Filling a fleet until it is full: how much of it each policy can hand out.

This is how the Alibaba 2023 GPU-sharing trace is meant to be read (its authors' FGD paper,
ATC'23, §6): the trace's creation and deletion times do not describe a loaded cluster (at
their recorded pace the fleet of the node list is 0.2% busy), so pods are instead drawn
from the trace's GPU pods (with replacement, seeded), placed one after another by the
placement scheduler, and never leave. After each arrival the simulator records the demand
that arrived and the share of the fleet allocated, both as fractions of the fleet's GPU
capacity. A policy that fragments less keeps allocating after a fragmenting one starts
refusing pods that would fit in the free capacity taken as a whole.

Every placement is also checked by the simulator's own compliance check (``checker``'s
``ComplianceChecker``), apart from the scheduler: the violation count must stay 0.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from suanli.policy.rules import RuleSet, default_rules
from suanli.policy.snapshot import FleetSnapshot
from suanli.scheduler.fragmentation import fragmentation, target_of
from suanli.scheduler.placement import Policy, Scheduler
from suanli.scheduler.workload import WHOLE, ClusterView, NodeView, Workload
from suanli.sim.checker import ComplianceChecker, Violation

__all__ = ["FillRun", "demand_milli", "fill"]

Progress = Callable[[float], None]


def demand_milli(w: Workload) -> int:
    """GPU capacity a workload asks for, in milli (1000 = one whole device)."""
    return w.accelerators * w.gpu_milli


@dataclass
class FillRun:
    """One policy filling one fleet. ``arrived`` and ``allocated`` (fractions of the fleet's
    capacity) are sampled after each arrival; ``failed_at`` is the arrived demand at the
    first pod that did not fit."""

    policy: str
    capacity_milli: int
    arrived: list[float] = field(default_factory=list)
    allocated: list[float] = field(default_factory=list)
    placed: int = 0
    failed: int = 0
    failed_at: float | None = None
    fragmentation: float = 0.0  # free capacity the mix could not use at the end / capacity
    violations: list[Violation] = field(default_factory=list)
    wall_s: float = 0.0

    def allocated_at(self, arrived: float) -> float:
        """Share of the fleet allocated when ``arrived`` (a fraction of capacity) had come."""
        if not self.arrived:
            return 0.0
        return float(np.interp(arrived, self.arrived, self.allocated))

    @property
    def final(self) -> float:
        return self.allocated[-1] if self.allocated else 0.0


def fill(
    workloads: Sequence[Workload],
    nodes: Sequence[NodeView],
    snapshot: FleetSnapshot,
    policy: Policy,
    *,
    rules: RuleSet | None = None,
    until: float = 1.3,
    seed: int = 0,
    progress: Progress | None = None,
) -> FillRun:
    """Draw from ``workloads`` (seeded) and place each until the arrived demand reaches
    ``until`` x the fleet's capacity. The policy's fragmentation target is the mix of
    ``workloads`` unless the policy names one."""
    if not workloads:
        raise ValueError("no workloads to fill the fleet with")
    if until <= 0:
        raise ValueError("until must be positive")
    rules = rules if rules is not None else default_rules()
    capacity = sum(n.accelerators for n in nodes if n.state == "ready") * WHOLE
    if capacity == 0:
        raise ValueError("the fleet has no ready accelerators")
    cluster = ClusterView(nodes)
    if policy.target is None:
        policy = replace(policy, target=target_of(workloads, cluster.slots))
    scheduler = Scheduler(cluster, rules, snapshot, policy)
    checker = ComplianceChecker(nodes, snapshot.data_centers, rules)
    run = FillRun(policy.name, capacity)
    rng = random.Random(seed)
    arrived = allocated = 0
    started = time.perf_counter()
    k = 0
    while arrived < until * capacity:
        pick = workloads[rng.randrange(len(workloads))]
        w = replace(pick, id=f"{pick.id}#{k}", submitted_at=float(k))
        k += 1
        arrived += demand_milli(w)
        placement = scheduler.place(w, commit=True).placement
        if placement is None:
            run.failed += 1
            if run.failed_at is None:
                run.failed_at = arrived / capacity
        else:
            run.placed += 1
            allocated += placement.count * w.gpu_milli
            for rule, sentence in checker.check(w, placement):
                run.violations.append(Violation(float(k), w.id, rule, sentence))
            checker.hold(w, placement, 1)
        run.arrived.append(arrived / capacity)
        run.allocated.append(allocated / capacity)
        if progress is not None and k % 200 == 0:
            progress(arrived / capacity / until)
    run.fragmentation = fragmentation(cluster, scheduler.target) / capacity
    run.wall_s = time.perf_counter() - started
    if progress is not None:
        progress(1.0)
    return run
