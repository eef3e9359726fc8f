"""The compliance gate of the placement scheduler: every placement passes the compliance
engine (``suanli.policy.evaluate``) for its exact data center, chip and count.

It asks lazily, per (data center, chip), never per node, and reuses a refusal where the
rules make it valid elsewhere (residency and export control do not depend on holdings;
quota refusals hold for larger requests of the same tenant). Each call sees a snapshot
reduced to the tenant's own allocations, which is all its quota reads.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from suanli.catalog.chips import load_catalog
from suanli.catalog.export_control import classify, load_export_rules
from suanli.policy.evaluate import ClassOf, Verdict, evaluate_placement
from suanli.policy.evaluate import Decision as Rule
from suanli.policy.rules import RuleSet
from suanli.policy.snapshot import (
    Allocation,
    FleetSnapshot,
    PlacementView,
    Residency,
    WorkloadView,
)
from suanli.scheduler.workload import ClusterView, Workload

_PLACE_ONLY = frozenset({"residency", "export_control"})  # decisions that ignore holdings


@functools.cache
def catalog_class_of(chip: str) -> str:
    """Export class of a catalog chip under the packaged rules; ``unknown`` off-catalog."""
    spec = load_catalog().find(chip)
    return "unknown" if spec is None else classify(spec, load_export_rules()).export_class


_Refusal = tuple[tuple[int, ...], str]


@dataclass
class _Blocked:
    places: dict[tuple[str, str], str] = field(default_factory=dict)  # (country, chip)
    combos: dict[str, set[int]] = field(default_factory=dict)  # sentence -> pool combos


@dataclass
class _Held:
    """What a tenant holds, as its quota reads it: in all, per export class, per chip."""

    total: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    by_chip: Counter[str] = field(default_factory=Counter)
    allocations: dict[str, Allocation] = field(default_factory=dict)  # per chip, summed
    snapshot: FleetSnapshot | None = None  # what the compliance engine sees of them


_NOTHING_HELD = _Held()  # read only


class ComplianceGate:
    """Asks the compliance engine (``evaluate_placement``) as seldom as its answers allow,
    and keeps what each tenant holds as its quota reads it (this round's placements too).

    The engine gets the snapshot with only the asking tenant's allocations, summed per chip:
    all that its quota reads (the verdict is the same as with the whole snapshot)."""

    def __init__(
        self, cluster: ClusterView, rules: RuleSet, snapshot: FleetSnapshot, class_of: ClassOf
    ) -> None:
        self.cluster, self.rules, self.snapshot, self.class_of = cluster, rules, snapshot, class_of
        self._verdicts: dict[tuple[object, ...], Verdict] = {}
        # (tenant, residency, sources) -> refusals that hold whatever it asks and holds ...
        self._blocked: dict[tuple[object, ...], _Blocked] = {}
        # ... and quota refusals: (country, chip) -> [(amounts, sentence)]
        self._refusals: dict[tuple[object, ...], dict[tuple[str, str], list[_Refusal]]] = {}
        self._views: dict[tuple[object, ...], WorkloadView] = {}
        self.held: dict[str, _Held] = {}
        for a in snapshot.allocations:
            self.hold(a.tenant, a.data_center, a.chip, a.count)

    def refusal(self, w: Workload, dc: str, chip: str, count: int) -> str | None:
        """The compliance engine's refusal of ``count`` x ``chip`` in ``dc``, or ``None``.

        Asked once per distinct question (tenant, residency, place, count, and the tenant's
        holdings its quota reads). A refusal also stands, without asking again, for the same
        tenant and chip in any data center of that country when it asks for no fewer and
        holds no less (a refusal by residency or export control alone: whatever it asks and
        holds): the rules speak of countries and tenants, and more is never less refused."""
        held = self.held.get(w.tenant.name)
        if held is None:
            held = self.held[w.tenant.name] = _Held()
        amounts = (count, held.total, held.by_class[self.class_of(chip)], held.by_chip[chip])
        asker = (w.tenant, w.residency, w.residency_sources)
        country = self.cluster.dc_country.get(dc, "")
        blocked = self._blocked.get(asker)
        if blocked is not None and (country, chip) in blocked.places:
            return blocked.places[(country, chip)]
        refused = self._refusals.setdefault(asker, {})
        for before, sentence in refused.get((country, chip), ()):
            if all(b <= a for b, a in zip(before, amounts, strict=True)):
                return sentence
        key = (asker, dc, chip, amounts)
        verdict = self._verdicts.get(key)
        if verdict is None:
            if dc not in self.snapshot.data_centers:
                why = f"{dc} is not in the compliance snapshot"
                verdict = Verdict(False, (Rule("SNAPSHOT", "unknown", False, why),))
            else:
                if held.snapshot is None:
                    mine = tuple(held.allocations.values())
                    data_centers, nodes = self.snapshot.data_centers, self.snapshot.nodes
                    held.snapshot = FleetSnapshot(data_centers, nodes, mine)
                view = self._views.get(asker)
                if view is None:  # the engine reads a view's tenant and residency
                    res = Residency(w.residency, w.residency_sources)
                    view = self._views[asker] = WorkloadView(w.tenant, w.id, w.kind, res)
                place = PlacementView(dc, chip, count)
                verdict = evaluate_placement(view, place, held.snapshot, self.rules, self.class_of)
            self._verdicts[key] = verdict
            if not verdict.allowed and country:
                if all(d.kind in _PLACE_ONLY for d in verdict.refusals):
                    if blocked is None:
                        blocked = self._blocked[asker] = _Blocked()
                    blocked.places[(country, chip)] = verdict.sentence
                    combo = self.cluster.country_code[country] * len(self.cluster.chip_names)
                    combo += self.cluster.chip_code[chip]
                    blocked.combos.setdefault(verdict.sentence, set()).add(combo)
                else:
                    refused.setdefault((country, chip), []).append((amounts, verdict.sentence))
        return None if verdict.allowed else verdict.sentence

    def known(self, w: Workload, count: int) -> dict[str, set[int]]:
        """(country, chip) pools the engine already refused ``w``'s tenant, as ``refusal``
        would answer without asking: sentence -> combos (see ``ClusterView.pool_combo``)."""
        asker = (w.tenant, w.residency, w.residency_sources)
        blocked = self._blocked.get(asker)
        out = blocked.combos if blocked is not None else {}
        refused = self._refusals.get(asker)
        if not refused:
            return out  # callers only read it
        out = {sentence: set(combos) for sentence, combos in out.items()}
        c = self.cluster
        held = self.held.get(w.tenant.name, _NOTHING_HELD)
        for (country, chip), entries in refused.items():
            amounts = (count, held.total, held.by_class[self.class_of(chip)], held.by_chip[chip])
            for before, sentence in entries:
                if all(b <= a for b, a in zip(before, amounts, strict=True)):
                    combo = c.country_code[country] * len(c.chip_names) + c.chip_code[chip]
                    out.setdefault(sentence, set()).add(combo)
                    break
        return out

    def check(
        self, w: Workload, chip: str, parts: Sequence[tuple[str, int]]
    ) -> tuple[str, str] | None:
        """(data center, sentence) of the first part refused, each part counted for the
        quota of the next; ``None`` when all pass."""
        if len(parts) == 1:
            refusal = self.refusal(w, parts[0][0], chip, parts[0][1])
            return None if refusal is None else (parts[0][0], refusal)
        added: list[tuple[str, int]] = []
        try:
            for dc, n in parts:
                refusal = self.refusal(w, dc, chip, n)
                if refusal is not None:
                    return dc, refusal
                self.hold(w.tenant.name, dc, chip, n)
                added.append((dc, n))
            return None
        finally:
            for dc, n in added:
                self.hold(w.tenant.name, dc, chip, -n)

    def hold(self, tenant: str, dc: str, chip: str, n: int) -> None:
        held = self.held.get(tenant)
        if held is None:
            held = self.held[tenant] = _Held()
        held.snapshot = None
        held.total += n
        held.by_class[self.class_of(chip)] += n
        count = held.by_chip[chip] = held.by_chip[chip] + n
        before = held.allocations.pop(chip, None)
        if count:  # summed per chip: the quota counts per tenant, class and chip
            where = dc if before is None else before.data_center
            held.allocations[chip] = Allocation(tenant, where, chip, count)
