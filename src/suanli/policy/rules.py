"""The rule set: domestic-share rules, export-control table, quotas, residency.

A rule set is a YAML document with a version and an effective date. Loading rejects, with
the line at fault: unknown fields, bad country codes, duplicate rule ids, and export rules
that overlap with contradicting outcomes (so the order of rules never matters).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date
from fractions import Fraction
from importlib import resources
from itertools import combinations
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from suanli.catalog.export_control import ExportClass
from suanli.domain.specs import ChipName, Country, Name, Spec
from suanli.domain.yamldoc import Lines, Loc, error_at, parse_yaml, validate
from suanli.errors import ValidationError

RuleId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")]
ShareView = Literal["count", "compute", "cost"]
Outcome = Literal["allow", "deny", "licence"]
EXPORT_CLASSES: tuple[ExportClass, ...] = ("3A090.a", "3A090.b", "not controlled", "unknown")


def _fraction(value: object) -> Fraction:
    if isinstance(value, bool | float):
        raise ValueError('write shares as a string such as "0.5" or "1/2" (floats are inexact)')
    try:
        out = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{value!r} is not a number") from None
    if not 0 <= out <= 1:
        raise ValueError("a share is between 0 and 1")
    return out


Share = Annotated[Fraction, BeforeValidator(_fraction)]


class Coverage(Spec):
    """Which data centers a rule covers: every criterion given must match; none = all."""

    owner_types: list[Literal["state", "private"]] | None = None
    countries: list[Country] | None = None
    data_centers: list[Name] | None = None

    def covers(self, name: str, country: str, owner_type: str) -> bool:
        return (
            (self.owner_types is None or owner_type in self.owner_types)
            and (self.countries is None or country in self.countries)
            and (self.data_centers is None or name in self.data_centers)
        )


class DomesticShareRule(Spec):
    id: RuleId
    description: str = ""
    view: ShareView = "count"
    more_than: Share | None = None
    at_least: Share | None = None
    covers: Coverage = Field(default_factory=Coverage)

    @model_validator(mode="after")
    def _one_threshold(self) -> DomesticShareRule:
        if (self.more_than is None) == (self.at_least is None):
            raise ValueError("give exactly one of more_than or at_least")
        return self

    @property
    def threshold(self) -> Fraction:
        return self.more_than if self.more_than is not None else self.at_least  # type: ignore[return-value]

    def satisfied(self, share: Fraction) -> bool:
        if self.more_than is not None:
            return share > self.more_than
        return share >= self.threshold

    @property
    def wording(self) -> str:
        op = "more than" if self.more_than is not None else "at least"
        return f"{op} {float(self.threshold):.0%} domestic by {self.view}"


Wild = Literal["*"]


class ExportRule(Spec):
    id: RuleId
    description: str = ""
    tenant_countries: Annotated[list[Country], Field(min_length=1)] | Wild = "*"
    data_center_countries: Annotated[list[Country], Field(min_length=1)] | Wild = "*"
    chip_classes: (
        Annotated[
            list[Literal["3A090.a", "3A090.b", "not controlled", "unknown"]], Field(min_length=1)
        ]
        | Wild
    ) = "*"
    tenant_verified: bool | None = None  # None: either
    outcome: Outcome
    licence: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _licence(self) -> ExportRule:
        if (self.outcome == "licence") != (self.licence is not None):
            raise ValueError("a licence reference is given exactly when outcome is licence")
        return self

    def matches(
        self, tenant_country: str, dc_country: str, chip_class: str, verified: bool
    ) -> bool:
        return (
            (self.tenant_countries == "*" or tenant_country in self.tenant_countries)
            and (self.data_center_countries == "*" or dc_country in self.data_center_countries)
            and (self.chip_classes == "*" or chip_class in self.chip_classes)
            and (self.tenant_verified is None or self.tenant_verified == verified)
        )

    def overlaps(self, other: ExportRule) -> bool:
        def meet(a: Sequence[str] | str, b: Sequence[str] | str) -> bool:
            return a == "*" or b == "*" or bool(set(a) & set(b))

        return (
            meet(self.tenant_countries, other.tenant_countries)
            and meet(self.data_center_countries, other.data_center_countries)
            and meet(self.chip_classes, other.chip_classes)
            and (
                self.tenant_verified is None
                or other.tenant_verified is None
                or self.tenant_verified == other.tenant_verified
            )
        )


class ExportSection(Spec):
    default_id: RuleId = "EXPORT-DEFAULT"
    default: Literal["allow", "deny"] = "allow"
    rules: list[ExportRule] = Field(default_factory=list)


class QuotaRule(Spec):
    id: RuleId
    tenant: Name | Wild = "*"
    max_accelerators: int | None = Field(default=None, ge=0)
    per_chip_class: dict[
        Literal["3A090.a", "3A090.b", "not controlled", "unknown"], Annotated[int, Field(ge=0)]
    ] = Field(default_factory=dict)
    per_chip: dict[ChipName, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


class ResidencySection(Spec):
    id: RuleId = "RESIDENCY"
    description: str = "data and everything derived from it stays in its country"


class RuleSet(Spec):
    version: str = Field(min_length=1, max_length=64)
    effective_from: date
    description: str = ""
    domestic_share: list[DomesticShareRule] = Field(default_factory=list)
    export_control: ExportSection = Field(default_factory=ExportSection)
    quotas: list[QuotaRule] = Field(default_factory=list)
    residency: ResidencySection = Field(default_factory=ResidencySection)

    def quota_for(self, tenant: str) -> QuotaRule | None:
        exact = [q for q in self.quotas if q.tenant == tenant]
        if exact:
            return exact[0]
        wild = [q for q in self.quotas if q.tenant == "*"]
        return wild[0] if wild else None


def _check_consistency(rules: RuleSet, lines: Lines) -> None:
    seen: dict[str, Loc] = {}
    ids: list[tuple[str, Loc]] = [(rules.residency.id, ("residency", "id"))]
    ids.append((rules.export_control.default_id, ("export_control", "default_id")))
    ids += [(r.id, ("domestic_share", i, "id")) for i, r in enumerate(rules.domestic_share)]
    ids += [
        (r.id, ("export_control", "rules", i, "id"))
        for i, r in enumerate(rules.export_control.rules)
    ]
    ids += [(r.id, ("quotas", i, "id")) for i, r in enumerate(rules.quotas)]
    for rule_id, loc in ids:
        if rule_id in seen:
            raise error_at(f"rule id {rule_id!r} is used twice", loc, lines)
        seen[rule_id] = loc
    tenants: dict[str, int] = {}
    for i, q in enumerate(rules.quotas):
        if q.tenant in tenants:
            raise error_at(
                f"tenant {q.tenant!r} has two quota rules "
                f"({rules.quotas[tenants[q.tenant]].id}, {q.id})",
                ("quotas", i, "tenant"),
                lines,
            )
        tenants[q.tenant] = i
    export = rules.export_control.rules
    for (i, a), (j, b) in combinations(enumerate(export), 2):
        if a.overlaps(b) and (a.outcome, a.licence) != (b.outcome, b.licence):
            line_a = lines.get(("export_control", "rules", i))
            raise error_at(
                f"export rules {a.id!r} (line {line_a}) and {b.id!r} overlap with contradicting "
                f"outcomes ({a.outcome} vs {b.outcome}); narrow one of them",
                ("export_control", "rules", j),
                lines,
            )


def parse_rules(text: str) -> RuleSet:
    data, lines = parse_yaml(text, "rule set")
    if not isinstance(data, dict):
        raise ValidationError("a rule set is a YAML mapping with version and effective_from")
    rules = validate(RuleSet, data, lines)
    _check_consistency(rules, lines)
    return rules


@functools.cache
def default_rules_text() -> str:
    return resources.files("suanli.policy").joinpath("data/default-rules.yaml").read_text("utf-8")


@functools.cache
def default_rules() -> RuleSet:
    return parse_rules(default_rules_text())
