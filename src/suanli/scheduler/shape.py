"""The static filters of a request: which pools its chip, memory, residency and topology
allow, as masks over the cluster's pools, and its perf rate per pool.

They depend on the request alone, not on what is free, so ``Shapes`` builds them once per
distinct request (a *shape*) and shares the masks between requests that filter alike
(another kind of work or model with the same chips, memory fit, residency and gang
scope). The filter reports (``explain``) are worded only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar, cast

import numpy as np

from suanli.perf.model import PerfModel
from suanli.scheduler.explain import FilterReport, grouped, state_report, topology_report
from suanli.scheduler.workload import WHOLE, BoolArray, ClusterView, FloatArray, Workload

__all__ = ["Shape", "Shapes"]

_T = TypeVar("_T")


@dataclass
class Shape:
    """What depends on the request alone: static filters and the perf rate per pool."""

    k: int
    mask: BoolArray
    wording: list[Callable[[], FilterReport]]
    rate: FloatArray  # per pool; 0 = unknown
    tokens_rate: bool  # the rate is tokens/s (a model was named)
    chip_rate: list[float]  # per chip
    ok: list[bool]  # mask, as a list
    chips: list[int]  # chips with a pool in mask
    feasible: bool  # any pool in mask
    _reports: list[FilterReport] | None = None
    by_rate: list[int] = field(init=False)  # chips, the fastest first (ties: lower chip)

    def __post_init__(self) -> None:
        self.by_rate = sorted(self.chips, key=lambda x: (-self.chip_rate[x], x))

    @property
    def reports(self) -> list[FilterReport]:
        if self._reports is None:
            self._reports = [word() for word in self.wording]
        return self._reports


class _Masks(NamedTuple):
    """Per pool: ready, and passes the chip filter, and memory, and residency; passes the
    topology filter; all of them (also as a list, and whether any pool does); and the chips
    that pass the chip and memory filters."""

    ready: BoolArray
    by_chip: BoolArray
    alive: BoolArray
    after_res: BoolArray
    ok: BoolArray
    mask: BoolArray
    chips: list[int]
    listed: list[bool]
    feasible: bool


class Shapes:
    """The shapes of the requests seen on ``cluster``, with ``perf``'s rates; caches what
    requests share."""

    def __init__(self, cluster: ClusterView, perf: PerfModel) -> None:
        self.cluster, self.perf = cluster, perf
        self._shapes: dict[tuple[object, ...], Shape] = {}
        self._memos: dict[tuple[object, ...], object] = {}

    def of(self, w: Workload) -> Shape:
        """The shape of ``w``'s request (one per distinct request)."""
        key: tuple[object, ...] = (w.kind, w.model_id, w.precision, w.accelerators, w.gpu_milli)
        key += (w.gang, w.topology, w.chips, w.residency)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = self._build(w)
        return shape

    def _build(self, w: Workload) -> Shape:
        """The static filters as masks; their reports are worded only when asked for."""
        c = self.cluster
        k = w.accelerators if w.gang else 1
        chips = self._memo(
            ("chip", w.chips),
            lambda: [w.chips.refusal(x, c.chip_stack[i], c.chip_memory[i])
                     for i, x in enumerate(c.chip_names)],
        )  # fmt: skip
        ests = self._memo(
            ("perf", w.kind, w.model_id, w.precision, k, w.gpu_milli),
            lambda: [self.perf.throughput(w.kind, w.model_id, x, w.precision, k,
                                          gpu_milli=w.gpu_milli) for x in c.chip_names],
        )  # fmt: skip
        memory = [None if w.model_id is None or e.fits else e.memory for e in ests]
        res = w.residency
        where = "/".join(sorted(res or ())) or "no country"
        places = self._memo(
            ("places", res),
            lambda: [None if res is None or x in res else f"{x} is outside {where}"
                     for x in c.countries],
        )  # fmt: skip
        multi = w.gang and w.topology != "node" and w.gpu_milli == WHOLE
        ready, by_chip, alive, after_res, ok, mask, present, listed, feasible = self._memo(
            ("masks", w.chips, tuple(memory), res, w.topology if multi else "node", k),
            lambda: self._masks(w, k, chips, memory, places),
        )
        nodes = c.pool_ready
        wording: list[Callable[[], FilterReport]] = [
            lambda: state_report(c),
            lambda: grouped("chip", chips, c.pool_chip, ready & ~by_chip, nodes),
            lambda: grouped("memory", memory, c.pool_chip, by_chip & ~alive, nodes),
            lambda: grouped("residency", places, c.pool_country, alive & ~after_res, nodes),
            lambda: topology_report(c, w, k, after_res & ~ok),
        ]
        if w.model_id is None:
            del wording[2]
        chip_rate = [e.rate or 0.0 for e in ests]
        rate = self._memo(("rate", *chip_rate), lambda: np.array(chip_rate)[c.pool_chip])
        tokens = w.model_id is not None
        return Shape(k, mask, wording, rate, tokens, chip_rate, listed, present, feasible)

    def _masks(
        self,
        w: Workload,
        k: int,
        chips: list[str | None],
        memory: list[str | None],
        places: list[str | None],
    ) -> _Masks:
        """The static filters of requests alike, shared by their shapes."""
        c = self.cluster
        chip_ok = np.array(
            [a is None and b is None for a, b in zip(chips, memory, strict=True)], dtype=np.bool_
        )
        country_ok = np.array([r is None for r in places], dtype=np.bool_)
        ready = c.pool_ready > 0
        by_chip = ready & np.array([r is None for r in chips], dtype=np.bool_)[c.pool_chip]
        alive = ready & chip_ok[c.pool_chip]
        after_res = alive & country_ok[c.pool_country]
        ok = self._topology_ok(w, k, after_res)
        present = [i for i, good in enumerate(chip_ok.tolist()) if good]
        mask = after_res & ok
        return _Masks(
            ready, by_chip, alive, after_res, ok, mask, present, mask.tolist(), bool(mask.any())
        )

    def _memo(self, key: tuple[object, ...], make: Callable[[], _T]) -> _T:
        if key not in self._memos:
            self._memos[key] = make()
        return cast(_T, self._memos[key])

    def _topology_ok(self, w: Workload, k: int, alive: BoolArray) -> BoolArray:
        c = self.cluster
        one_node: BoolArray = c.pool_size >= k
        if w.topology == "node" or not w.gang or w.gpu_milli < WHOLE:
            return one_node
        units = c.scope_units(w.topology)
        inside = alive & (units >= 0)
        cap = np.bincount(units[inside], weights=c.pool_capacity[inside], minlength=len(units))
        return one_node | ((units >= 0) & (cap[np.maximum(units, 0)] >= k))
