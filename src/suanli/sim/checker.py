"""The simulator's own compliance check: every placement is checked again with the
compliance engine, apart from the scheduler, with its own record of what each tenant
holds; what it refuses is a ``Violation`` (there must be none)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from suanli.catalog.chips import ChipCatalog, load_catalog
from suanli.policy.evaluate import ClassOf, evaluate_placement
from suanli.policy.rules import RuleSet
from suanli.policy.snapshot import (
    Allocation,
    DataCenterView,
    FleetSnapshot,
    PlacementView,
    Residency,
    WorkloadView,
)
from suanli.scheduler.gate import catalog_class_of
from suanli.scheduler.workload import NodeView, Placement, Workload

__all__ = ["ComplianceChecker", "Violation"]


@dataclass(frozen=True, slots=True)
class Violation:
    time: float
    job: str
    rule: str
    sentence: str


class ComplianceChecker:
    """Checks placements with the compliance engine, apart from the scheduler: its own
    record of what each tenant holds, a snapshot built from it at each check."""

    def __init__(
        self,
        nodes: Sequence[NodeView],
        data_centers: Mapping[str, DataCenterView],
        rules: RuleSet,
        class_of: ClassOf = catalog_class_of,
        catalog: ChipCatalog | None = None,
    ) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.data_centers, self.rules, self.class_of = data_centers, rules, class_of
        self.catalog = catalog if catalog is not None else load_catalog()
        self.held: dict[str, Counter[tuple[str, str]]] = {}
        self._verdicts: dict[tuple[object, ...], str | None] = {}

    def check(self, w: Workload, p: Placement) -> list[tuple[str, str]]:
        """(rule, sentence) of everything wrong with placing ``w`` as ``p``."""
        wrong: list[tuple[str, str]] = []
        parts = Counter[str]()
        for slot in p.slots:
            node = self.nodes.get(slot.node)
            if node is None:
                wrong.append(("FLEET", f"node {slot.node} is not in the fleet"))
                continue
            if node.chip != p.chip:
                wrong.append(("FLEET", f"{slot.node} holds {node.chip}, not {p.chip}"))
            if any(not 0 <= a < node.accelerators for a in slot.accelerators):
                wrong.append(("FLEET", f"{slot.node} has no device {slot.accelerators}"))
            parts[node.data_center] += len(slot.accelerators)
        spec = self.catalog.find(p.chip)
        refusal = w.chips.refusal(
            p.chip,
            spec.software_stack if spec else None,
            float(spec.memory_gb) if spec and spec.memory_gb else None,
        )
        if refusal is not None:
            wrong.append(("CHIP", refusal))
        held = self.held.setdefault(w.tenant.name, Counter())
        added: list[tuple[str, str]] = []
        for dc, n in sorted(parts.items()):
            sentence = self._verdict(w, dc, p.chip, n, held)
            if sentence is not None:
                wrong.append(sentence)
            held[(dc, p.chip)] += n
            added.append((dc, p.chip))
        for key in added:
            held[key] -= parts[key[0]]
        return wrong

    def _verdict(
        self, w: Workload, dc: str, chip: str, n: int, held: Counter[tuple[str, str]]
    ) -> tuple[str, str] | None:
        if dc not in self.data_centers:
            return ("SNAPSHOT", f"{dc} is not a data center of the fleet")
        holdings = tuple(sorted((k, v) for k, v in held.items() if v))
        key = (w.tenant, w.residency, w.residency_sources, dc, chip, n, holdings)
        if key in self._verdicts:
            cached = self._verdicts[key]
            return None if cached is None else ("COMPLIANCE", cached)
        view = WorkloadView(w.tenant, w.id, w.kind, Residency(w.residency, w.residency_sources))
        mine = tuple(Allocation(w.tenant.name, d, c, v) for (d, c), v in holdings)
        snapshot = FleetSnapshot(self.data_centers, (), mine)
        verdict = evaluate_placement(
            view, PlacementView(dc, chip, n), snapshot, self.rules, self.class_of
        )
        result = None if verdict.allowed else verdict.sentence
        self._verdicts[key] = result
        return None if result is None else ("COMPLIANCE", result)

    def hold(self, w: Workload, p: Placement, sign: int) -> None:
        held = self.held.setdefault(w.tenant.name, Counter())
        for slot in p.slots:
            node = self.nodes.get(slot.node)
            if node is not None:
                held[(node.data_center, p.chip)] += sign * len(slot.accelerators)
