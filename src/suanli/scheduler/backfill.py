"""EASY backfilling: the reservation of the first job of a round that cannot start.

The blocked head job gets the nodes where it can start first as running work with a known
expected end leaves them, and that time (``reserve``). Later jobs of the round may start
off those nodes, or on them when their ``runtime_s`` ends before the reservation
(``Scheduler._usable`` applies it while placing).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from suanli.scheduler.workload import WHOLE, Workload, cover

if TYPE_CHECKING:
    from suanli.scheduler.placement import Scheduler
    from suanli.scheduler.shape import Shape

__all__ = ["Reservation", "reserve"]


@dataclass(frozen=True, slots=True)
class Reservation:
    workload: str
    nodes: tuple[str, ...]
    start: float


def reserve(s: Scheduler, w: Workload, shape: Shape) -> Reservation | None:
    """EASY: the nodes where ``w`` can start first as running work with a known end
    leaves, and when. ``None`` when no known end ever frees enough."""
    c, k, d = s.cluster, shape.k, w.gpu_milli
    best: tuple[float, list[int]] | None = None
    multi = w.gang and w.topology != "node" and d == WHOLE
    units: list[int] = c.scope_units(w.topology).tolist()
    events: dict[int, list[tuple[float, int, int]]] = {}
    allowed: dict[int, bool] = {}  # per (country, chip) combo, as in _single
    one_node = k <= c.slots
    for p in np.flatnonzero(shape.mask).tolist():
        alike = c.combos[p]
        if alike not in allowed:
            chip, dc = c.group_names[int(c.pool_group[p])]
            allowed[alike] = s.gate.check(w, chip, ((dc, k),)) is None
        if not allowed[alike]:
            continue
        unit = units[p]
        for n in c.pool_members(p):
            line = c.timeline(n, s.now)
            if one_node:
                for t, whole, top in line:
                    if (whole >= k if d == WHOLE else top >= d) and (best is None or t < best[0]):
                        best = (t, [n])
                        break
            if multi and unit >= 0:
                prev = 0
                at = events.setdefault(unit, [])
                for t, whole, _ in line:
                    at.append((t, n, whole - prev))
                    prev = whole
    for evs in events.values():
        have = Counter[int]()
        evs.sort(key=lambda e: e[0])
        for i, (t, n, delta) in enumerate(evs):
            have[n] += delta
            last_at_t = i + 1 == len(evs) or evs[i + 1][0] > t
            if last_at_t and sum(have.values()) >= k:
                if best is None or t < best[0]:
                    best = (
                        t,
                        [n for n, _ in cover([(f, n) for n, f in have.items() if f], k)],
                    )
                break
    if best is None:
        return None
    return Reservation(w.id, tuple(c.nodes[n].name for n in best[1]), best[0])
