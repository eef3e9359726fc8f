"""Fragmentation-aware packing of fractional accelerators (FGD, "Beware of Fragmentation",
ATC'23): a node's fragmentation is the free capacity a request drawn from the expected mix
could not use; placing where it grows least keeps whole devices whole.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence

from suanli.scheduler.workload import WHOLE, ClusterView, Workload

Target = tuple[tuple[int, int, float], ...]
"""A request mix: (accelerators, gpu_milli, popularity) per class, popularities summing to 1."""

DEFAULT_TARGET: Target = (
    (1, 250, 0.1), (1, 500, 0.15), (1, WHOLE, 0.35), (2, WHOLE, 0.1), (4, WHOLE, 0.1),
    (8, WHOLE, 0.2),
)  # fmt: skip


# --- fragmentation (FGD, ATC'23) -------------------------------------------------------------


@functools.lru_cache(maxsize=1 << 16)
def node_fragmentation(free: tuple[int, ...], target: Target) -> float:
    """Expected free milli of a node that a request drawn from ``target`` could not use:
    all of it if the request cannot run there; else the devices too small for it (for a
    share ``d``: devices with less than ``d`` free; for whole devices: partly used ones)."""
    total, whole, top = sum(free), free.count(WHOLE), max(free, default=0)
    out = 0.0
    for k, d, p in target:
        if d >= WHOLE:
            out += p * (total - WHOLE * whole if whole >= k else total)
        else:
            out += p * (sum(f for f in free if f < d) if top >= d else total)
    return out


def fragmentation(cluster: ClusterView, target: Target = DEFAULT_TARGET) -> float:
    """The fleet's fragmentation: the sum over ready nodes of ``node_fragmentation``."""
    return sum(
        node_fragmentation(tuple(sorted(cluster.free[i])), target)
        for i, ready in enumerate(cluster.ready)
        if ready
    )


@functools.lru_cache(maxsize=1 << 16)
def fragmentation_delta(sig: tuple[int, ...], k: int, d: int, target: Target) -> tuple[float, int]:
    """(increase of node fragmentation, free share of the device to take) of the best
    choice on a node of free shares ``sig`` (sorted), for ``k`` devices of ``d`` milli."""
    before = node_fragmentation(sig, target)
    if d == WHOLE:
        after = tuple(sorted((0,) * k + sig[: len(sig) - k]))
        return node_fragmentation(after, target) - before, WHOLE
    best = (math.inf, -1)
    for f in sorted(set(sig)):
        if f >= d:
            trial = list(sig)
            trial[trial.index(f)] = f - d
            best = min(best, (node_fragmentation(tuple(sorted(trial)), target) - before, f))
    return best


def target_of(workloads: Sequence[Workload], slots: int = 8) -> Target:
    """The request mix of ``workloads`` (single-node requests), or ``DEFAULT_TARGET``."""
    mix = Counter(
        (w.accelerators, w.gpu_milli) for w in workloads if w.accelerators <= slots and w.gang
    )
    total = sum(mix.values())
    if not total:
        return DEFAULT_TARGET
    return tuple(sorted((k, d, n / total) for (k, d), n in mix.items()))
