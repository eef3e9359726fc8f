"""Preemption of spot work: a high priority job that does not fit may stop spot work.

In each scope that holds spot work it could use (a pool; or, for a gang spanning them,
its data center / chip), in order of the policy's preference, stop the newest spot work
until the job fits; keep the scope that stops the fewest accelerators. At most
``MAX_PREEMPTION_SCOPES`` scopes are tried. The victims are released; the caller commits
the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from suanli.scheduler.workload import WHOLE, Placement, Running, Workload

if TYPE_CHECKING:
    from suanli.scheduler.placement import Scheduler
    from suanli.scheduler.shape import Shape

__all__ = ["MAX_PREEMPTION_SCOPES", "Preemption", "preempt"]

MAX_PREEMPTION_SCOPES = 32  # scopes (pools, data centers) a blocked job tries preempting in


@dataclass(frozen=True, slots=True)
class Preemption:
    victim: str
    by: str
    placement: Placement


def preempt(s: Scheduler, w: Workload, shape: Shape) -> tuple[list[Running], Placement | None]:
    """Spot work to stop so that ``w`` fits: in each scope (pool; or data center / chip
    for gangs spanning those) holding spot work, stop the newest until it fits; keep the
    scope that stops the fewest accelerators."""
    c = s.cluster
    spot = c.spot
    pools = np.array(sorted(p for p, ids in spot.items() if ids and shape.mask[p]), np.int64)
    if not len(pools):
        return [], None
    wide = w.gang and w.topology in ("data_center", "any") and w.gpu_milli == WHOLE
    units = c.scope_units(w.topology) if wide else np.arange(len(c.pool_chip))
    ranked = s._order(pools, w, shape)
    scopes = list(dict.fromkeys(int(units[p]) for p in ranked))[:MAX_PREEMPTION_SCOPES]
    best: tuple[int, int, list[str]] | None = None
    for u in scopes:
        inside = np.flatnonzero(units == u)
        victims = sorted({v for p in inside for v in spot.get(int(p), ())},
                         key=lambda v: (-c.running[v].workload.submitted_at, v))  # fmt: skip
        stopped: list[Running] = []
        fits = False
        for v in victims:
            stopped.append(s._uncommit(v))
            if s._place(w, shape, None, units == u) is not None:
                fits = True
                break
        for run in reversed(stopped):
            s._recommit(run)
        cost = sum(r.placement.count for r in stopped)
        if fits and (best is None or cost < best[0]):
            best = (cost, u, [r.workload.id for r in stopped])
    if best is None:
        return [], None
    runs = [s._uncommit(v) for v in best[2]]
    return runs, s._place(w, shape, None, units == best[1])
