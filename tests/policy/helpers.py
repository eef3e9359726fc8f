"""Shared fixtures for the policy tests: the catalog, export classes, and small builders."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import yaml

from suanli.catalog.chips import load_catalog
from suanli.catalog.export_control import classify, load_export_rules
from suanli.policy.rules import RuleSet, parse_rules
from suanli.policy.snapshot import DataCenterView, FleetSnapshot, NodeView

CATALOG = load_catalog()
EXPORT_RULES = load_export_rules()
CLASS: dict[str, str] = {
    chip.model: classify(chip, EXPORT_RULES).export_class for chip in CATALOG
}
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
