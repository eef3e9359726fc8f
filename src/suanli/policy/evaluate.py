"""The compliance decisions: may this workload run there? may the fleet change like this?

Pure functions over snapshots. Every decision names its rule and says why in a sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from suanli.catalog.chips import ChipCatalog
from suanli.policy.rules import DomesticShareRule, RuleSet
from suanli.policy.shares import Shares, domestic_shares
from suanli.policy.snapshot import FleetSnapshot, PlacementView, WorkloadView

ClassOf = Callable[[str], str]  # chip model -> export class


@dataclass(frozen=True, slots=True)
class Decision:
    rule: str
    kind: str  # residency | export_control | quota | domestic_share
    allowed: bool
    sentence: str
    licence: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "allowed": self.allowed,
            "sentence": self.sentence,
            "licence": self.licence,
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    decisions: tuple[Decision, ...]

    @property
    def refusals(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if not d.allowed)

    @property
    def sentence(self) -> str:
        chosen = self.refusals or self.decisions
        return "; ".join(f"[{d.rule}] {d.sentence}" for d in chosen)


def _residency(
    workload: WorkloadView, place: PlacementView, dc_country: str, rules: RuleSet
) -> Decision:
    rid = rules.residency.id
    res = workload.residency
    if res.countries is None:
        return Decision(rid, "residency", True, "reads no country-bound data")
    sources = ", ".join(res.sources)
    if not res.countries:
        return Decision(
            rid,
            "residency",
            False,
            f"its inputs ({sources}) must stay in different countries, so it can run nowhere",
        )
    where = "/".join(sorted(res.countries))
    if dc_country in res.countries:
        return Decision(
            rid,
            "residency",
            True,
            f"{sources} must stay in {where}; {place.data_center} is in {dc_country}",
        )
    return Decision(
        rid,
        "residency",
        False,
        f"{sources} must stay in {where}; {place.data_center} is in {dc_country}",
    )


def _export(
    workload: WorkloadView, place: PlacementView, dc_country: str, rules: RuleSet, class_of: ClassOf
) -> Decision:
    tenant = workload.tenant
    chip_class = class_of(place.chip)
    section = rules.export_control
    matched = [
        r
        for r in section.rules
        if r.matches(tenant.country, dc_country, chip_class, tenant.verified)
    ]
    facts = (
        f"{'verified' if tenant.verified else 'unverified'} tenant from {tenant.country}, "
        f"{place.chip} ({chip_class}) in {dc_country}"
    )
    if not matched:
        return Decision(
            section.default_id,
            "export_control",
            section.default == "allow",
            f"{facts}: no rule matches, default {section.default}",
        )
    rule = matched[0]  # overlapping rules agree (checked at load)
    allowed = rule.outcome != "deny"
    outcome = f"allowed under licence {rule.licence}" if rule.outcome == "licence" else rule.outcome
    return Decision(rule.id, "export_control", allowed, f"{facts}: {outcome}", rule.licence)


def _quota(
    workload: WorkloadView,
    place: PlacementView,
    snapshot: FleetSnapshot,
    rules: RuleSet,
    class_of: ClassOf,
) -> Decision | None:
    tenant = workload.tenant.name
    quota = rules.quota_for(tenant)
    if quota is None:
        return None
    held = [a for a in snapshot.allocations if a.tenant == tenant]
    total = sum(a.count for a in held) + place.count
    if quota.max_accelerators is not None and total > quota.max_accelerators:
        return Decision(
            quota.id,
            "quota",
            False,
            f"{tenant} would hold {total} accelerators; its limit is {quota.max_accelerators}",
        )
    chip_class = class_of(place.chip)
    if chip_class in quota.per_chip_class:
        in_class = sum(a.count for a in held if class_of(a.chip) == chip_class) + place.count
        limit = quota.per_chip_class[chip_class]
        if in_class > limit:
            return Decision(
                quota.id,
                "quota",
                False,
                f"{tenant} would hold {in_class} {chip_class} accelerators; its limit is {limit}",
            )
    if place.chip in quota.per_chip:
        on_chip = sum(a.count for a in held if a.chip == place.chip) + place.count
        limit = quota.per_chip[place.chip]
        if on_chip > limit:
            return Decision(
                quota.id,
                "quota",
                False,
                f"{tenant} would hold {on_chip} x {place.chip}; its limit is {limit}",
            )
    return Decision(
        quota.id, "quota", True, f"{tenant} would hold {total} accelerators, within its quota"
    )


def evaluate_placement(
    workload: WorkloadView,
    place: PlacementView,
    snapshot: FleetSnapshot,
    rules: RuleSet,
    class_of: ClassOf,
) -> Verdict:
    """May ``workload`` hold ``place.count`` x ``place.chip`` in ``place.data_center``?"""
    if place.count < 1:
        raise ValueError(f"a placement holds at least one accelerator, not {place.count}")
    dc = snapshot.data_centers[place.data_center]
    decisions = [
        _residency(workload, place, dc.country, rules),
        _export(workload, place, dc.country, rules, class_of),
    ]
    quota = _quota(workload, place, snapshot, rules, class_of)
    if quota is not None:
        decisions.append(quota)
    return Verdict(all(d.allowed for d in decisions), tuple(decisions))


@dataclass(frozen=True, slots=True)
class ShareCheck:
    rule: DomesticShareRule
    data_center: str
    before: Shares | None  # None: the data center is new
    after: Shares
    status: str  # compliant | violated | unverifiable

    @property
    def refused(self) -> bool:
        """A change is refused when it leaves the rule broken and did not improve the share:
        the share fell, or it stayed equal while the data center grew. (Changes that keep
        composition and share, such as a new cost, pass; so does every improvement.)"""
        if self.status != "violated":
            return False
        if self.before is None:
            return True
        view = self.rule.view
        old, new = self.before.view(view), self.after.view(view)
        if old.value is None or new.value is None or self.rule.satisfied(old.value):
            return True
        return new.value < old.value or (new.value == old.value and new.total > old.total)

    def sentence(self) -> str:
        view = self.rule.view
        before = self.before.view(view).text() if self.before else "none (new data center)"
        return (
            f"{self.data_center} must hold {self.rule.wording}: domestic share by {view} "
            f"{before} before, {self.after.view(view).text()} after"
        )


def rule_status(rule: DomesticShareRule, shares: Shares) -> str:
    value = shares.view(rule.view).value
    if value is None:
        return "unverifiable" if shares.count.total else "compliant"
    return "compliant" if rule.satisfied(value) else "violated"


def shares_of(snapshot: FleetSnapshot, data_center: str, catalog: ChipCatalog) -> Shares:
    dc = snapshot.data_centers[data_center]
    return domestic_shares(snapshot.nodes_in(data_center), dc.costs, catalog)


def check_fleet_change(
    before: FleetSnapshot,
    after: FleetSnapshot,
    touched: set[str],
    rules: RuleSet,
    catalog: ChipCatalog,
) -> list[ShareCheck]:
    """Domestic-share checks of every rule covering a touched data center, after the change.

    A data center with no accelerators has nothing to measure and is compliant.
    """
    out: list[ShareCheck] = []
    for name in sorted(touched):
        dc = after.data_centers.get(name)
        if dc is None:
            continue
        after_shares = shares_of(after, name, catalog)
        before_shares = shares_of(before, name, catalog) if name in before.data_centers else None
        for rule in rules.domestic_share:
            if rule.covers.covers(dc.name, dc.country, dc.owner_type):
                status = rule_status(rule, after_shares)
                out.append(ShareCheck(rule, name, before_shares, after_shares, status))
    return out


def usage_share(intervals: list[tuple[bool, int, float | int | Fraction]]) -> Fraction | None:
    """(domestic?, accelerators, seconds) -> domestic fraction of accelerator-seconds.

    Float seconds are read as the decimal they print as (0.1 is 1/10, not its binary
    neighbour), so sums land exactly on boundaries such as 1/2.
    """

    def exact(seconds: float | int | Fraction) -> Fraction:
        return Fraction(repr(seconds)) if isinstance(seconds, float) else Fraction(seconds)

    total = sum((n * exact(s) for _d, n, s in intervals), Fraction(0))
    if total == 0:
        return None
    domestic = sum((n * exact(s) for d, n, s in intervals if d), Fraction(0))
    return domestic / total


def where_may_run(
    workload: WorkloadView,
    count: int,
    snapshot: FleetSnapshot,
    rules: RuleSet,
    class_of: ClassOf,
) -> Mapping[tuple[str, str], Verdict]:
    """For every (data center, chip) that has that chip: the verdict for ``count`` of it."""
    out: dict[tuple[str, str], Verdict] = {}
    for node in snapshot.nodes:
        if node.chip is None or (node.data_center, node.chip) in out:
            continue
        place = PlacementView(node.data_center, node.chip, count)
        out[(node.data_center, node.chip)] = evaluate_placement(
            workload, place, snapshot, rules, class_of
        )
    return out
