"""Rule sets: the default loads; bad files are refused with the field and line at fault."""

from __future__ import annotations

import textwrap
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.errors import ValidationError
from suanli.policy.rules import RuleSet, default_rules, default_rules_text, parse_rules
from tests.policy.helpers import (
    HEADER,
    contradicting_pairs,
    export_rule_dicts,
    match_points,
    rules_from,
)


def doc(body: str) -> str:
    return HEADER + textwrap.dedent(body).lstrip("\n")


def line_of(text: str, marker: str) -> int:
    """1-based line of the only line containing ``marker``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def refused(text: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_rules(text)
    return info.value


# --- the default rule set ----------------------------------------------------------------


def test_default_rules_load() -> None:
    rules = default_rules()
    assert rules.version == "example-2026.1"
    assert parse_rules(default_rules_text()) == rules
    (cn,) = rules.domestic_share
    assert cn.id == "CN-STATE-DOMESTIC-COUNT"
    assert cn.view == "count"
    assert cn.more_than == Fraction(1, 2)
    assert isinstance(cn.more_than, Fraction)
    assert cn.at_least is None
    assert cn.covers.covers("dc", "CN", "state")
    assert not cn.covers.covers("dc", "CN", "private")
    assert not cn.covers.covers("dc", "SG", "state")
    assert [r.id for r in rules.export_control.rules] == [
        "EC-EMBARGOED",
        "EC-CONTROLLED-UNVERIFIED",
        "EC-CONTROLLED-CN-TENANT-ABROAD",
    ]
    assert rules.export_control.default == "allow"
    licensed = rules.export_control.rules[2]
    assert (licensed.outcome, licensed.licence) == ("licence", "EXAMPLE-LICENCE-REF-001")
    quota = rules.quota_for("anyone")
    assert quota is not None
    assert quota.id == "QUOTA-DEFAULT"
    assert quota.max_accelerators == 512
    assert quota.per_chip_class == {"3A090.a": 256}
    assert rules.residency.id == "RESIDENCY"


def test_minimal_rule_set_has_defaults() -> None:
    rules = parse_rules(HEADER)
    assert rules.domestic_share == []
    assert rules.export_control.rules == []
    assert rules.export_control.default == "allow"
    assert rules.quota_for("t") is None


# --- bad rule files ----------------------------------------------------------------------


def test_unknown_top_level_field() -> None:
    text = doc("colour: red  # <-\n")
    err = refused(text)
    assert err.field == "colour"
    assert err.line == line_of(text, "# <-")
    assert "colour" in err.message
    assert "not permitted" in err.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            """
            domestic_share:
              - id: A
                more_than: "1/2"
                threshold: "1/2"  # <-
            """,
            "domestic_share[0].threshold",
        ),
        (
            """
            domestic_share:
              - id: A
                more_than: "1/2"
                covers:
                  owner_types: [state]
                  country: [CN]  # <-
            """,
            "domestic_share[0].covers.country",
        ),
        (
            """
            export_control:
              rules:
                - id: A
                  outcome: deny
                - id: B
                  tenant_country: [CN]  # <-
                  outcome: deny
            """,
            "export_control.rules[1].tenant_country",
        ),
        (
            """
            export_control:
              fallback: deny  # <-
            """,
            "export_control.fallback",
        ),
        (
            """
            quotas:
              - id: Q
                max_accelerator: 5  # <-
            """,
            "quotas[0].max_accelerator",
        ),
    ],
)
def test_unknown_nested_field(body: str, field: str) -> None:
    text = doc(body)
    err = refused(text)
    assert err.field == field
    assert err.line == line_of(text, "# <-")
    assert field in err.message


def test_bad_country_in_coverage() -> None:
    text = doc(
        """
        domestic_share:
          - id: A
            more_than: "1/2"
            covers:
              countries:
                - CN
                - QQ  # <-
        """
    )
    err = refused(text)
    assert err.field == "domestic_share[0].covers.countries[1]"
    assert err.line == line_of(text, "# <-")
    assert "'QQ' is not an ISO 3166-1 alpha-2" in err.message


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("tenant_countries", "XX", "'XX' is not an ISO 3166-1 alpha-2 country code"),
        ("data_center_countries", "XX", "'XX' is not an ISO 3166-1 alpha-2 country code"),
        ("chip_classes", "3A090.z", "Input should be '3A090.a'"),
    ],
)
def test_bad_item_in_wildcard_list_names_the_item(key: str, value: str, says: str) -> None:
    """Fields typed ``list[...] | "*"``: the error names the item, not pydantic's union tag."""
    good = "3A090.a" if key == "chip_classes" else "CN"
    text = doc(
        f"""
        export_control:
          rules:
            - id: A
              {key}:
                - {good}
                - {value}  # <-
              outcome: deny
        """
    )
    err = refused(text)
    assert err.field == f"export_control.rules[0].{key}[1]"
    assert err.line == line_of(text, "# <-")
    assert says in err.message
    assert err.message.startswith(f"export_control.rules[0].{key}[1]: ")
    assert "more errors" not in err.message


@pytest.mark.parametrize("key", ["tenant_countries", "data_center_countries"])
def test_bad_country_in_a_flow_list(key: str) -> None:
    text = doc(
        f"""
        export_control:
          rules:
            - id: A
              {key}: [CN, SG, XX]  # <-
              outcome: deny
        """
    )
    err = refused(text)
    assert err.field == f"export_control.rules[0].{key}[2]"
    assert err.line == line_of(text, "# <-")


def test_bad_quota_tenant_names_the_field() -> None:
    text = doc(
        """
        quotas:
          - id: Q
            tenant: "not a name!"  # <-
        """
    )
    err = refused(text)
    assert err.field == "quotas[0].tenant"
    assert err.line == line_of(text, "# <-")
    assert "is not a valid name" in err.message


def test_overlapping_export_rules_with_contradicting_outcomes() -> None:
    text = doc(
        """
        export_control:
          rules:
            - id: EC-CN-DENY  # first
              tenant_countries: [CN]
              outcome: deny
            - id: EC-KP-ONLY
              tenant_countries: [KP]
              outcome: allow
            - id: EC-A-ALLOW  # <-
              chip_classes: [3A090.a]
              outcome: allow
        """
    )
    err = refused(text)
    assert err.field == "export_control.rules[2]"
    assert err.line == line_of(text, "# <-")
    assert "'EC-CN-DENY'" in err.message
    assert "'EC-A-ALLOW'" in err.message
    assert f"line {line_of(text, '# first')}" in err.message
    assert "deny vs allow" in err.message


def test_overlapping_licence_rules_with_different_licences_contradict() -> None:
    text = doc(
        """
        export_control:
          rules:
            - id: L1
              data_center_countries: [SG]
              outcome: licence
              licence: REF-1
            - id: L2  # <-
              data_center_countries: [SG, MY]
              outcome: licence
              licence: REF-2
        """
    )
    err = refused(text)
    assert err.field == "export_control.rules[1]"
    assert err.line == line_of(text, "# <-")
    assert "'L1'" in err.message
    assert "'L2'" in err.message


def test_overlap_through_verified_none_contradicts() -> None:
    text = doc(
        """
        export_control:
          rules:
            - id: A
              tenant_verified: false
              outcome: deny
            - id: B  # <-
              outcome: allow
        """
    )
    err = refused(text)
    assert err.field == "export_control.rules[1]"
    assert err.line == line_of(text, "# <-")


@pytest.mark.parametrize(
    ("body", "rule_id", "field"),
    [
        (
            """
            domestic_share:
              - id: DUP
                more_than: "1/2"
            quotas:
              - id: DUP  # <-
                max_accelerators: 3
            """,
            "DUP",
            "quotas[0].id",
        ),
        (
            """
            export_control:
              rules:
                - id: DUP
                  outcome: deny
                  tenant_countries: [KP]
                - id: DUP  # <-
                  outcome: deny
                  tenant_countries: [IR]
            """,
            "DUP",
            "export_control.rules[1].id",
        ),
        (
            """
            domestic_share:
              - id: RESIDENCY  # <-
                at_least: "1/2"
            """,
            "RESIDENCY",
            "domestic_share[0].id",
        ),
        (
            """
            export_control:
              default_id: X
              rules:
                - id: X  # <-
                  outcome: deny
            """,
            "X",
            "export_control.rules[0].id",
        ),
        (
            """
            residency:
              id: EXPORT-DEFAULT  # <-
            """,
            "EXPORT-DEFAULT",
            None,  # either place names the duplicate
        ),
    ],
)
def test_duplicate_rule_ids(body: str, rule_id: str, field: str | None) -> None:
    text = doc(body)
    err = refused(text)
    assert f"rule id {rule_id!r} is used twice" in err.message
    if field is not None:
        assert err.field == field
        assert err.line == line_of(text, "# <-")
    else:
        assert err.field in ("residency.id", "export_control.default_id")


def test_two_quotas_for_one_tenant() -> None:
    text = doc(
        """
        quotas:
          - id: Q1
            tenant: t1
          - id: Q2
            tenant: t1  # <-
        """
    )
    err = refused(text)
    assert err.field == "quotas[1].tenant"
    assert err.line == line_of(text, "# <-")
    assert "Q1" in err.message
    assert "Q2" in err.message


@pytest.mark.parametrize("value", ["0.5", "0.50000000001", "1.0", "true", "false"])
@pytest.mark.parametrize("key", ["more_than", "at_least"])
def test_float_or_bool_shares_are_refused(key: str, value: str) -> None:
    text = doc(
        f"""
        domestic_share:
          - id: A
            {key}: {value}  # <-
        """
    )
    err = refused(text)
    assert err.field == f"domestic_share[0].{key}"
    assert err.line == line_of(text, "# <-")
    if value not in ("true", "false"):
        assert "floats are inexact" in err.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"1/2"', Fraction(1, 2)),
        ('"0.5"', Fraction(1, 2)),
        ("0", Fraction(0)),
        ('"2/3"', Fraction(2, 3)),
        ("1", Fraction(1)),
    ],
)
def test_exact_shares_parse_to_fractions(value: str, expected: Fraction) -> None:
    rules = parse_rules(doc(f"domestic_share:\n  - id: A\n    more_than: {value}\n"))
    threshold = rules.domestic_share[0].threshold
    assert isinstance(threshold, Fraction)
    assert threshold == expected


@pytest.mark.parametrize("value", ['"3/2"', '"-1/2"', '"abc"', '"1/0"', "2"])
def test_bad_share_values(value: str) -> None:
    text = doc(f"domestic_share:\n  - id: A\n    at_least: {value}  # <-\n")
    err = refused(text)
    assert err.field == "domestic_share[0].at_least"
    assert err.line == line_of(text, "# <-")


@pytest.mark.parametrize(
    "thresholds", ['    more_than: "1/2"\n    at_least: "1/2"\n', "    view: count\n"]
)
def test_exactly_one_threshold(thresholds: str) -> None:
    text = doc("domestic_share:\n  - id: A  # <-\n" + thresholds)
    err = refused(text)
    assert err.field == "domestic_share[0]"
    assert err.line == line_of(text, "# <-")
    assert "exactly one of more_than or at_least" in err.message


@pytest.mark.parametrize(
    "rule",
    [
        "      outcome: deny\n      licence: REF-1\n",
        "      outcome: allow\n      licence: REF-1\n",
        "      outcome: licence\n",
    ],
)
def test_licence_given_exactly_when_outcome_is_licence(rule: str) -> None:
    text = doc("export_control:\n  rules:\n    - id: A  # <-\n" + rule)
    err = refused(text)
    assert err.field == "export_control.rules[0]"
    assert err.line == line_of(text, "# <-")
    assert "licence reference is given exactly when outcome is licence" in err.message


def test_bad_chip_in_quota() -> None:
    text = doc(
        """
        quotas:
          - id: Q
            per_chip:
              H2000: 1  # <-
        """
    )
    err = refused(text)
    assert err.line == line_of(text, "# <-")
    assert "unknown chip 'H2000'" in err.message
    assert err.field is not None
    assert err.field.startswith("quotas[0].per_chip")


def test_negative_quota_limit() -> None:
    text = doc("quotas:\n  - id: Q\n    per_chip_class:\n      3A090.a: -1  # <-\n")
    err = refused(text)
    assert err.field == "quotas[0].per_chip_class.3A090.a"
    assert err.line == line_of(text, "# <-")
    assert "greater than or equal to 0" in err.message


def test_missing_version() -> None:
    err = refused("effective_from: 2025-01-01\n")
    assert err.field == "version"


@pytest.mark.parametrize("text", ["", "- a\n", "just text\n"])
def test_not_a_mapping(text: str) -> None:
    err = refused(text)
    assert "YAML mapping" in err.message


def test_invalid_yaml_names_the_line() -> None:
    err = refused(HEADER + "quotas: [\n")
    assert err.line is not None
    assert err.line >= 3
    assert "not valid YAML" in err.message


# --- consistent export tables are accepted -----------------------------------------------


def test_overlapping_rules_with_the_same_outcome_are_accepted() -> None:
    rules = parse_rules(
        doc(
            """
            export_control:
              rules:
                - id: A
                  tenant_countries: [KP, IR]
                  outcome: deny
                - id: B
                  chip_classes: [3A090.a]
                  tenant_verified: false
                  outcome: deny
                - id: C
                  tenant_countries: [CN]
                  data_center_countries: [SG]
                  tenant_verified: true
                  outcome: licence
                  licence: REF
                - id: D
                  tenant_countries: [CN]
                  data_center_countries: [SG, MY]
                  chip_classes: [3A090.a, 3A090.b]
                  tenant_verified: true
                  outcome: licence
                  licence: REF
            """
        )
    )
    assert [r.id for r in rules.export_control.rules] == ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"tenant_countries": ["CN"]}, {"tenant_countries": ["US", "SG"]}),
        ({"data_center_countries": ["CN"]}, {"data_center_countries": ["AE"]}),
        ({"chip_classes": ["3A090.a"]}, {"chip_classes": ["3A090.b", "unknown"]}),
        ({"tenant_verified": True}, {"tenant_verified": False}),
        (
            {"tenant_countries": ["CN"], "tenant_verified": True},
            {"tenant_countries": ["CN"], "tenant_verified": False},
        ),
    ],
)
def test_disjoint_rules_with_different_outcomes_are_accepted(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    rules = rules_from(
        {
            "export_control": {
                "rules": [
                    {"id": "A", **a, "outcome": "deny"},
                    {"id": "B", **b, "outcome": "allow"},
                ]
            }
        }
    )
    assert len(rules.export_control.rules) == 2


def test_quota_for_prefers_the_exact_tenant() -> None:
    rules = rules_from(
        {
            "quotas": [
                {"id": "Q-ANY", "tenant": "*", "max_accelerators": 10},
                {"id": "Q-T1", "tenant": "t1", "max_accelerators": 99},
                {"id": "Q-T2", "tenant": "t2", "max_accelerators": 1},
            ]
        }
    )
    assert rules.quota_for("t1").id == "Q-T1"  # type: ignore[union-attr]
    assert rules.quota_for("t2").id == "Q-T2"  # type: ignore[union-attr]
    assert rules.quota_for("t3").id == "Q-ANY"  # type: ignore[union-attr]
    only_exact = rules_from({"quotas": [{"id": "Q-T1", "tenant": "t1"}]})
    assert only_exact.quota_for("t3") is None
    assert only_exact.quota_for("t1").id == "Q-T1"  # type: ignore[union-attr]


# --- property: the load check refuses exactly the contradicting tables --------------------

UNIVERSE = ["CN", "SG", "US", "KP"]
POINTS = match_points(UNIVERSE, UNIVERSE)


@settings(max_examples=100, deadline=None)
@given(st.lists(export_rule_dicts(UNIVERSE, UNIVERSE), max_size=5))
def test_load_refuses_exactly_the_contradicting_export_tables(
    generated: list[dict[str, Any]],
) -> None:
    rules = [{"id": f"EC-{i}", **r} for i, r in enumerate(generated)]
    bad = contradicting_pairs(rules, POINTS)
    data = {"export_control": {"rules": rules}}
    if not bad:
        loaded: RuleSet = rules_from(data)
        assert [r.id for r in loaded.export_control.rules] == [r["id"] for r in rules]
        return
    with pytest.raises(ValidationError) as info:
        rules_from(data)
    err = info.value
    assert err.field is not None
    assert err.field.startswith("export_control.rules[")
    j = int(err.field.removeprefix("export_control.rules[").rstrip("]"))
    named = [i for i in range(len(rules)) if f"'EC-{i}'" in err.message]
    assert j in named
    assert any(pair in bad for pair in [(i, j) for i in named if i < j])


@pytest.mark.parametrize("key", ["tenant_countries", "data_center_countries", "chip_classes"])
def test_an_empty_match_list_is_refused(key: str) -> None:
    text = doc(
        f"""
        export_control:
          rules:
            - id: A
              {key}: []  # <-
              outcome: deny
        """
    )
    err = refused(text)
    assert err.line == line_of(text, "# <-")
    assert "at least 1 item" in err.message
