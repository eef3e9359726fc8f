"""The compliance gate of the placement scheduler: every placement passes the compliance
engine (``suanli.policy.evaluate``) for its data center, chip and count, or is covered by
an answer the engine gave to a question that asked and held no less.

It asks lazily, per (data center, chip), never per node, and reuses an answer where the
rules make it valid elsewhere: residency and export control do not depend on holdings
(an answer for a country and chip stands for all its data centers); the quota does not
depend on the place (an allowed quota question stands for any question of that tenant and
chip that asks and holds no more, a refused one for those that ask and hold no less). A
new question first asks a wider one (``PAD`` more asked and held), so that one answer
covers the placements that follow. Each call sees a snapshot reduced to the tenant's own
allocations, which is all its quota reads.
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
_UNLIMITED = 1 << 62
PAD = 64  # how much more a new question first asks for, and holds (see ``refusal``)


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


def _place_key(w: Workload, country: str, chip: str) -> tuple[object, ...]:
    """What the engine's place decisions read: the tenant, its residency (the sources it
    names only word a refusal), the country and the chip."""
    t = w.tenant
    return (t.name, t.country, t.verified, w.residency, country, chip)


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
        # (tenant, chip) -> (count, held in all, in the chip's class, of the chip): the
        # engine's quota allowed that much, so it allows anything no larger
        self.room: dict[tuple[str, str], tuple[int, int, int, int]] = {}
        # (tenant, residency, country, chip) the engine's place decisions allowed: the
        # sources a residency names only word its sentences
        self._place_ok: set[tuple[object, ...]] = set()
        self._pads: dict[tuple[str, str], int] = {}
        self.asked = 0  # questions put to the engine
        for a in snapshot.allocations:
            self.hold(a.tenant, a.data_center, a.chip, a.count)

    def refusal(self, w: Workload, dc: str, chip: str, count: int) -> str | None:
        """The compliance engine's refusal of ``count`` x ``chip`` in ``dc``, or ``None``.

        Asked once per distinct question (tenant, residency, place, count, and the tenant's
        holdings its quota reads), and answered without asking where earlier answers settle
        it. The engine's decisions are of two sorts: by place (residency and export control:
        the tenant, its residency, the country and the chip, whatever it asks and holds; the
        sources a residency names only word the sentence of a refusal) and
        by quota (the tenant, the chip, how many it asks and holds, wherever); more asked or
        held is never less refused. So a refusal by place stands for that tenant, residency
        and chip in every data center of the country; a quota refusal there when it asks for
        no fewer and holds no less; and a question is allowed without asking when the engine
        allowed its place and, for the tenant and chip, a quota question that asked and held
        no less (``room``). A new question first asks the engine a wider one (``PAD`` more
        asked and more held) so that its answer covers the questions that follow."""
        tenant = w.tenant
        held = self.held.get(tenant.name)
        if held is None:
            held = self.held[tenant.name] = _Held()
        asker = (tenant, w.residency, w.residency_sources)
        where = self.snapshot.data_centers.get(dc)
        room = self.room.get((tenant.name, chip))
        roomy = (  # the quota allows it: only the place may refuse
            room is not None
            and count <= room[0]
            and held.total <= room[1]
            and held.by_chip[chip] <= room[3]
            and held.by_class[self.class_of(chip)] <= room[2]
        )
        place = None if where is None else _place_key(w, where.country, chip)
        if roomy and place in self._place_ok:
            return None
        amounts = (count, held.total, held.by_class[self.class_of(chip)], held.by_chip[chip])
        country = self.cluster.dc_country.get(dc, "")
        blocked = self._blocked.get(asker)
        if blocked is not None and (country, chip) in blocked.places:
            return blocked.places[(country, chip)]
        refused = self._refusals.setdefault(asker, {})
        for before, sentence in refused.get((country, chip), ()):
            if all(b <= a for b, a in zip(before, amounts, strict=True)):
                return sentence  # asks and holds no less than a refused question
        key = (asker, dc, chip, amounts)
        verdict = self._verdicts.get(key)
        if verdict is None:
            if where is None:
                why = f"{dc} is not in the compliance snapshot"
                verdict = Verdict(False, (Rule("SNAPSHOT", "unknown", False, why),))
            else:
                pad = self._pads.get((tenant.name, chip), PAD)
                if pad:
                    wide = self._ask(w, asker, held, PlacementView(dc, chip, count + pad), pad)
                    self._learn(w, where.country, chip, wide, tuple(a + pad for a in amounts))
                    if wide.allowed:
                        return None
                    if any(d.kind == "quota" for d in wide.refusals):
                        self._pads[(tenant.name, chip)] = 0  # near the quota: ask exactly
                    else:  # refused by place alone: what the engine says of the question too
                        verdict = wide
                if verdict is None:
                    verdict = self._ask(w, asker, held, PlacementView(dc, chip, count), 0)
                    self._learn(w, where.country, chip, verdict, amounts)
            if verdict.allowed or not country:  # refusals are remembered below
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

    def _learn(
        self, w: Workload, country: str, chip: str, verdict: Verdict, amounts: tuple[int, ...]
    ) -> None:
        """What ``verdict`` (on ``amounts``) says beyond its own question: whether the
        place allows the asker, and the quota room of the tenant and chip. Verdicts with
        decisions of other sorts teach nothing."""
        place_ok, quota_ok, quota = True, True, False
        for d in verdict.decisions:
            if d.kind == "quota":
                quota, quota_ok = True, quota_ok and d.allowed
            elif d.kind in _PLACE_ONLY:
                place_ok = place_ok and d.allowed
            else:
                return
        if place_ok:
            self._place_ok.add(_place_key(w, country, chip))
        if quota_ok:
            key = (w.tenant.name, chip)  # the quota reads the tenant's name and holdings
            room = self.room.get(key)
            if not quota:  # no quota applies to the tenant
                self.room[key] = (_UNLIMITED,) * 4
            elif room is None or room[1] <= amounts[1]:
                self.room[key] = (amounts[0], amounts[1], amounts[2], amounts[3])

    def _ask(
        self,
        w: Workload,
        asker: tuple[object, ...],
        held: _Held,
        place: PlacementView,
        pad: int,
    ) -> Verdict:
        """The engine's verdict on ``place`` with the tenant holding what it holds, and
        ``pad`` more of ``place.chip``."""
        if held.snapshot is None:
            mine = tuple(held.allocations.values())
            data_centers, nodes = self.snapshot.data_centers, self.snapshot.nodes
            held.snapshot = FleetSnapshot(data_centers, nodes, mine)
        snapshot = held.snapshot
        if pad:
            chip, tenant = place.chip, w.tenant.name
            padded = [a for a in snapshot.allocations if a.chip != chip]
            have = held.allocations.get(chip)
            where = place.data_center if have is None else have.data_center
            padded.append(Allocation(tenant, where, chip, held.by_chip[chip] + pad))
            snapshot = FleetSnapshot(snapshot.data_centers, snapshot.nodes, tuple(padded))
        view = self._views.get(asker)
        if view is None:  # the engine reads a view's tenant and residency
            res = Residency(w.residency, w.residency_sources)
            view = self._views[asker] = WorkloadView(w.tenant, w.id, w.kind, res)
        self.asked += 1
        return evaluate_placement(view, place, snapshot, self.rules, self.class_of)

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
        total = held.total
        for (country, chip), entries in refused.items():
            in_class, on_chip = held.by_class[self.class_of(chip)], held.by_chip[chip]
            for before, sentence in entries:
                if (
                    before[0] <= count
                    and before[1] <= total
                    and before[2] <= in_class
                    and before[3] <= on_chip
                ):
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
