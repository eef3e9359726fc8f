"""Why a workload went where it went, or why it waits: a structure and its text.

Each filter reports how many nodes it removed and why, the reasons grouped (one sentence
per group, with its node count, largest first). The chosen placement carries the score
components the policy ranked on. ``Explanation.text()`` renders it for people;
``to_json()`` for the API.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from suanli.scheduler.workload import (
    WHOLE,
    BoolArray,
    ClusterView,
    IntArray,
    Placement,
    Workload,
)

__all__ = [
    "MAX_REASONS",
    "Explanation",
    "FilterReport",
    "ScoreReport",
    "assemble",
    "capacity_report",
    "grouped",
    "outcome",
    "report",
    "request_text",
    "state_report",
    "topology_report",
]

MAX_REASONS = 6  # groups shown per filter in the text; the rest are summed


@dataclass(frozen=True, slots=True)
class FilterReport:
    """``removed`` nodes, and ``reasons``: (sentence, nodes) pairs, largest first."""

    name: str
    removed: int
    reasons: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "filter": self.name,
            "removed": self.removed,
            "reasons": [{"reason": r, "nodes": n} for r, n in self.reasons],
        }


def report(name: str, counts: Mapping[str, int]) -> FilterReport:
    """A filter report from reason -> nodes (zero counts dropped)."""
    reasons = tuple(sorted(((r, n) for r, n in counts.items() if n), key=lambda x: (-x[1], x[0])))
    return FilterReport(name, sum(n for _, n in reasons), reasons)


@dataclass(frozen=True, slots=True)
class ScoreReport:
    """The policy and the components it ranked the chosen placement on, in rank order."""

    policy: str
    components: tuple[tuple[str, float], ...]

    def text(self) -> str:
        parts = ", ".join(f"{name} {_number(value)}" for name, value in self.components)
        return f"policy {self.policy}: {parts}" if parts else f"policy {self.policy}"


@dataclass(frozen=True, slots=True)
class Explanation:
    """``considered`` nodes went through ``filters`` in order; ``survivors`` were left for
    scoring. ``outcome`` is one sentence: where it was placed, or why it waits."""

    workload: str
    request: str
    considered: int
    filters: tuple[FilterReport, ...]
    survivors: int
    placed: bool
    outcome: str
    score: ScoreReport | None = None

    def removed_by(self, name: str) -> FilterReport | None:
        return next((f for f in self.filters if f.name == name), None)

    def text(self) -> str:
        head = "placed" if self.placed else "pending"
        lines = [
            f"{self.workload} ({self.request}): {head}: {self.outcome}",
            f"  considered {self.considered:,} nodes",
        ]
        for f in self.filters:
            if not f.removed:
                continue
            lines.append(f"  - {f.name}: removed {f.removed:,}")
            for reason, nodes in f.reasons[:MAX_REASONS]:
                lines.append(f"      {nodes:,} nodes: {reason}")
            rest = f.reasons[MAX_REASONS:]
            if rest:
                lines.append(f"      {sum(n for _, n in rest):,} more in {len(rest)} other groups")
        lines.append(f"  {self.survivors:,} nodes left to score")
        if self.score is not None:
            lines.append(f"  score: {self.score.text()}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "workload": self.workload,
            "request": self.request,
            "considered": self.considered,
            "filters": [f.to_json() for f in self.filters],
            "survivors": self.survivors,
            "placed": self.placed,
            "outcome": self.outcome,
            "score": None
            if self.score is None
            else {"policy": self.score.policy, "components": dict(self.score.components)},
        }


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def request_text(w: Workload) -> str:
    """``acme: 8 x one of H100 SXM, gang in one node, high`` and the like."""
    size = f"{w.gpu_milli} milli of 1" if w.gpu_milli < WHOLE else f"{w.accelerators}"
    shape = f"gang in one {w.topology.replace('_', ' ')}" if w.gang else "independent replicas"
    if w.gang and w.topology == "any":
        shape = "gang anywhere"
    model = f", {w.model_id} at {w.precision}" if w.model_id else ""
    where = ""
    if w.residency is not None:
        data = f" ({', '.join(w.residency_sources)})" if w.residency_sources else ""
        where = f", data in {'/'.join(sorted(w.residency)) or 'no country'}{data}"
    return f"{w.tenant.name}: {size} x {w.chips.describe()}{model}, {shape}{where}, {w.priority}"


def capacity_report(
    cluster: ClusterView, w: Workload, k: int, cand: BoolArray
) -> tuple[FilterReport, int]:
    """The ``capacity`` filter over the candidate pools ``cand``: nodes without the free
    devices the request needs now, and the nodes left."""
    c, d = cluster, w.gpu_milli
    if d < WHOLE:
        nodes = cand[c.node_pools] & c.ready_nodes
        short = int((nodes & (c.node_max < d)).sum())
        reason = f"no device has {d} milli free"
        return report("capacity", {reason: short}), int(nodes.sum()) - short
    multi = w.gang and w.topology != "node"
    need = 1 if multi else k
    per_free = c.hist[cand].sum(axis=0)
    counts: Counter[str] = Counter()
    for f in range(min(need, len(per_free))):
        text = "no free accelerator" if f == 0 and need == 1 else f"{f} free, {need} needed"
        counts[text] += int(per_free[f])
    survivors = int(per_free[need:].sum())
    if multi and k > 1:
        units = c.scope_units(w.topology)
        inside = cand & (units >= 0)
        free = np.bincount(units[inside], weights=c.whole_total[inside], minlength=len(units))
        useful = c.hist[:, 1:].sum(axis=1)
        for p in np.flatnonzero(inside & (free[np.maximum(units, 0)] < k)):
            u = int(units[p])
            if c.pool_size[p] >= k and c.maxwhole[p] >= k:
                continue  # one of its nodes can take the gang alone
            counts[f"{c.unit_name(w.topology, u)} has {int(free[u])} free, {k} needed"] += int(
                useful[p]
            )
            survivors -= int(useful[p])
    return report("capacity", counts), max(survivors, 0)


def outcome(filters: tuple[FilterReport, ...], survivors: int) -> str:
    """Why nothing was placed, from the last filter that removed nodes."""
    last = next((f for f in reversed(filters) if f.removed), None)
    if last is None or not last.reasons:
        return "no node can take it now"
    reason, nodes = last.reasons[0]
    others = len(last.reasons) - 1
    more = f" (and {others} other reason{'s' if others > 1 else ''})" if others else ""
    return f"no node left after the {last.name} filter: {reason} ({nodes:,} nodes){more}"


def grouped(
    name: str, reasons: list[str | None], codes: IntArray, gone: BoolArray, nodes: IntArray
) -> FilterReport:
    """A report of the pools ``gone``, each with the reason of its code (chip, country)."""
    counts = np.bincount(codes[gone], weights=nodes[gone], minlength=len(reasons))
    return report(name, {r: int(counts[i]) for i, r in enumerate(reasons) if r})


def state_report(cluster: ClusterView) -> FilterReport:
    states = Counter[str]()
    for (_, state), n in cluster.not_ready.items():
        states[f"node is {state}"] += n
    return report("state", states)


def topology_report(cluster: ClusterView, w: Workload, k: int, gone: BoolArray) -> FilterReport:
    """Why the pools ``gone`` can never hold the gang in one node / island / data center."""
    c = cluster
    counts = Counter[str]()
    if w.topology == "node" or not w.gang or w.gpu_milli < WHOLE:
        for p in np.flatnonzero(gone):
            text = f"a node holds {int(c.pool_size[p])} x {c.pools.keys[p][0]}"
            counts[f"{text}; {k} must share one node"] += int(c.pool_ready[p])
        return report("topology", counts)
    units = c.scope_units(w.topology)
    inside = (c.pool_ready > 0) & (units >= 0)
    cap = np.bincount(units[inside], weights=c.pool_capacity[inside], minlength=len(units))
    scope = w.topology.replace("_", " ")
    for p in np.flatnonzero(gone):
        u = int(units[p])
        if u < 0:
            text = f"not in an island; a node holds {int(c.pool_size[p])}"
        else:
            text = f"{c.unit_name(w.topology, u)} holds {int(cap[u])} in all"
        counts[f"{text}; {k} must share one {scope}"] += int(c.pool_ready[p])
    return report("topology", counts)


def assemble(
    w: Workload,
    cluster: ClusterView,
    filters: list[FilterReport],
    survivors: int,
    placement: Placement | None,
    policy: str,
) -> Explanation:
    """The explanation of one decision from its filter reports."""
    done = tuple(filters)
    if placement is None:
        return Explanation(
            w.id, request_text(w), len(cluster.nodes), done, survivors, False,
            outcome(done, survivors),
        )  # fmt: skip
    where = ", ".join(f"{s.node} {list(s.accelerators)}" for s in placement.slots)
    dcs = ", ".join(dc for dc, _ in placement.parts)
    text = f"{placement.count} x {placement.chip} in {dcs}: {where}"
    score = ScoreReport(policy, placement.score)
    return Explanation(
        w.id, request_text(w), len(cluster.nodes), done, survivors, True, text, score
    )
