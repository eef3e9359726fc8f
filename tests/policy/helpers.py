"""Shared fixtures for the policy tests: the catalog, export classes, and small builders."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from fractions import Fraction
from itertools import combinations, product
from typing import Any

import yaml
from hypothesis import strategies as st

from suanli.catalog.chips import load_catalog
from suanli.catalog.export_control import classify, load_export_rules
from suanli.policy.rules import RuleSet, parse_rules
from suanli.policy.snapshot import DataCenterView, FleetSnapshot, NodeView

CATALOG = load_catalog()
EXPORT_RULES = load_export_rules()
CLASS: dict[str, str] = {chip.model: classify(chip, EXPORT_RULES).export_class for chip in CATALOG}
CHIPS: list[str] = sorted(CLASS)
DOMESTIC: list[str] = sorted(c.model for c in CATALOG if c.domestic_cn)
FOREIGN: list[str] = sorted(c.model for c in CATALOG if not c.domestic_cn)
EXPORT_CLASSES = ("3A090.a", "3A090.b", "not controlled", "unknown")

HEADER = "version: test-1\neffective_from: 2025-01-01\n"


def class_of(chip: str) -> str:
    return CLASS[CATALOG.get(chip).model]


def rules_from(data: dict[str, Any]) -> RuleSet:
    """A rule set from a plain dict, through the YAML loader (so load checks apply)."""
    doc = {"version": "test-1", "effective_from": "2025-01-01", **data}
    return parse_rules(yaml.safe_dump(doc, sort_keys=False))


def all_rule_ids(rules: RuleSet) -> set[str]:
    ids = {rules.residency.id, rules.export_control.default_id}
    ids |= {r.id for r in rules.domestic_share}
    ids |= {r.id for r in rules.export_control.rules}
    ids |= {q.id for q in rules.quotas}
    return ids


def nodes(dc: str, *groups: tuple[str, int]) -> tuple[NodeView, ...]:
    """Nodes in ``dc``, one per (chip, count) group."""
    return tuple(NodeView(f"{dc}-n{i}", dc, chip, count) for i, (chip, count) in enumerate(groups))


def fleet(dcs: Iterable[DataCenterView], *node_groups: Iterable[NodeView]) -> FleetSnapshot:
    return FleetSnapshot(
        {dc.name: dc for dc in dcs}, tuple(n for group in node_groups for n in group)
    )


def count_share(node_list: Iterable[NodeView]) -> Fraction | None:
    """Independent oracle: domestic accelerators / all accelerators, counting count > 0."""
    dom = tot = 0
    for n in node_list:
        if n.chip is None or n.count <= 0:
            continue
        tot += n.count
        if CATALOG.get(n.chip).domestic_cn:
            dom += n.count
    return Fraction(dom, tot) if tot else None


# --- export tables: random rules and a brute-force overlap oracle ------------------------

OTHER_COUNTRY = "FR"  # named by no generated rule: stands for every country "*" alone matches

Point = tuple[str, str, str, bool]  # tenant country, data center country, class, verified


def match_points(tenant_countries: list[str], dc_countries: list[str]) -> list[Point]:
    return list(
        product(
            [*tenant_countries, OTHER_COUNTRY],
            [*dc_countries, OTHER_COUNTRY],
            EXPORT_CLASSES,
            [True, False],
        )
    )


@functools.cache
def _subset(values: tuple[str, ...]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just("*"), st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)
    )


@st.composite
def export_rule_dicts(
    draw: st.DrawFn, tenant_countries: list[str], dc_countries: list[str]
) -> dict[str, Any]:
    """One export rule as YAML data, without id; "*" sometimes written, sometimes implied."""
    rule: dict[str, Any] = {}
    for key, values in (
        ("tenant_countries", tenant_countries),
        ("data_center_countries", dc_countries),
        ("chip_classes", list(EXPORT_CLASSES)),
    ):
        value = draw(_subset(tuple(values)))
        if value != "*" or draw(st.booleans()):
            rule[key] = value
    verified = draw(st.sampled_from([None, True, False]))
    if verified is not None:
        rule["tenant_verified"] = verified
    rule["outcome"] = draw(st.sampled_from(["allow", "deny", "licence"]))
    if rule["outcome"] == "licence":
        rule["licence"] = draw(st.sampled_from(["REF-1", "REF-2"]))
    return rule


def oracle_matches(rule: dict[str, Any], point: Point) -> bool:
    """Does the export rule (YAML data) apply at ``point``? Written apart from the code."""
    tenant, dc, chip_class, verified = point
    return (
        (rule.get("tenant_countries", "*") == "*" or tenant in rule["tenant_countries"])
        and (rule.get("data_center_countries", "*") == "*" or dc in rule["data_center_countries"])
        and (rule.get("chip_classes", "*") == "*" or chip_class in rule["chip_classes"])
        and rule.get("tenant_verified") in (None, verified)
    )


def _verdict_of(rule: dict[str, Any]) -> tuple[str, str | None]:
    return rule["outcome"], rule.get("licence")


def contradicting_pairs(rules: list[dict[str, Any]], points: list[Point]) -> set[tuple[int, int]]:
    """Pairs (i < j) of rules that both apply at some point but decide differently."""
    matched = [frozenset(k for k, p in enumerate(points) if oracle_matches(r, p)) for r in rules]
    return {
        (i, j)
        for (i, a), (j, b) in combinations(enumerate(rules), 2)
        if _verdict_of(a) != _verdict_of(b) and matched[i] & matched[j]
    }


def consistent_subset(rules: list[dict[str, Any]], points: list[Point]) -> list[dict[str, Any]]:
    """Greedily keep the rules that contradict none kept before them."""
    kept: list[tuple[dict[str, Any], frozenset[int]]] = []
    for rule in rules:
        matched = frozenset(k for k, p in enumerate(points) if oracle_matches(rule, p))
        if all(_verdict_of(rule) == _verdict_of(other) or not matched & m for other, m in kept):
            kept.append((rule, matched))
    return [rule for rule, _m in kept]


def ruleset_from(data: dict[str, Any]) -> RuleSet:
    """A rule set straight from YAML data (no YAML round trip: fast, for property tests)."""
    return RuleSet.model_validate(data)
