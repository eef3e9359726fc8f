"""Placement and fleet-change decisions, checked against an oracle written in the test."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.policy.evaluate import (
    ShareCheck,
    Verdict,
    check_fleet_change,
    evaluate_placement,
    usage_share,
    where_may_run,
)
from suanli.policy.rules import RuleSet, default_rules, default_rules_text
from suanli.policy.snapshot import (
    Allocation,
    DataCenterView,
    FleetSnapshot,
    NodeView,
    PlacementView,
    Residency,
    TenantView,
    WorkloadView,
)
from tests.policy.helpers import (
    CATALOG,
    CHIPS,
    EXPORT_CLASSES,
    all_rule_ids,
    class_of,
    consistent_subset,
    count_share,
    export_rule_dicts,
    fleet,
    match_points,
    nodes,
    oracle_matches,
    rules_from,
    ruleset_from,
)

DC_COUNTRIES = ["CN", "SG", "US", "AE", "KP", "MY"]
TENANT_COUNTRIES = [*DC_COUNTRIES, "IR"]
TENANTS = ["t1", "t2", "t3"]
POINTS = match_points(TENANT_COUNTRIES, DC_COUNTRIES)
DEFAULT_DATA: dict[str, Any] = yaml.safe_load(default_rules_text())


# --- random worlds -----------------------------------------------------------------------


@st.composite
def snapshots(draw: st.DrawFn) -> FleetSnapshot:
    n_dcs = draw(st.integers(min_value=1, max_value=4))
    dcs = {
        f"dc{i}": DataCenterView(
            f"dc{i}",
            draw(st.sampled_from(DC_COUNTRIES)),
            draw(st.sampled_from(["state", "private"])),
        )
        for i in range(n_dcs)
    }
    names = sorted(dcs)
    node_list = draw(
        st.lists(
            st.tuples(
                st.sampled_from(names),
                st.one_of(st.none(), st.sampled_from(CHIPS)),
                st.integers(min_value=0, max_value=16),
            ),
            max_size=10,
        )
    )
    allocations = draw(
        st.lists(
            st.builds(
                Allocation,
                st.sampled_from(TENANTS),
                st.sampled_from(names),
                st.sampled_from(CHIPS),
                st.integers(min_value=1, max_value=64),
            ),
            max_size=8,
        )
    )
    return FleetSnapshot(
        dcs,
        tuple(NodeView(f"n{i}", dc, chip, c) for i, (dc, chip, c) in enumerate(node_list)),
        tuple(allocations),
    )


@st.composite
def quota_dicts(draw: st.DrawFn, tenant: str, index: int) -> dict[str, Any]:
    quota: dict[str, Any] = {"id": f"Q-{index}", "tenant": tenant}
    limit = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=160)))
    if limit is not None:
        quota["max_accelerators"] = limit
    classes = draw(st.lists(st.sampled_from(EXPORT_CLASSES), max_size=2, unique=True))
    quota["per_chip_class"] = {c: draw(st.integers(min_value=0, max_value=96)) for c in classes}
    chips = draw(st.lists(st.sampled_from(CHIPS), max_size=2, unique=True))
    quota["per_chip"] = {c: draw(st.integers(min_value=0, max_value=64)) for c in chips}
    return quota


QUOTAS = {tenant: quota_dicts(tenant, i) for i, tenant in enumerate(["*", *TENANTS])}
EXPORT_RULE_DICTS = export_rule_dicts(TENANT_COUNTRIES, DC_COUNTRIES)


@st.composite
def rule_data(draw: st.DrawFn) -> dict[str, Any]:
    """A rule set as YAML data: the default one or a random, consistent one; random quotas."""
    quotas = [draw(QUOTAS[tenant]) for tenant in ["*", *TENANTS] if draw(st.booleans())]
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        data = dict(DEFAULT_DATA)
        data["effective_from"] = str(data["effective_from"])
        if draw(st.booleans()):
            data["quotas"] = quotas
        return data
    export = consistent_subset(draw(st.lists(EXPORT_RULE_DICTS, max_size=6)), POINTS)
    return {
        "version": "random",
        "effective_from": "2025-01-01",
        "domestic_share": [
            {"id": "DS-1", "more_than": "1/2", "covers": {"owner_types": ["state"]}},
        ],
        "residency": {"id": draw(st.sampled_from(["RESIDENCY", "RES-LOCAL"]))},
        "export_control": {
            "default_id": draw(st.sampled_from(["EXPORT-DEFAULT", "EC-FALLBACK"])),
            "default": draw(st.sampled_from(["allow", "deny"])),
            "rules": [{"id": f"EC-{i}", **r} for i, r in enumerate(export)],
        },
        "quotas": quotas,
    }


workloads = st.builds(
    WorkloadView,
    tenant=st.builds(
        TenantView,
        name=st.sampled_from(TENANTS),
        country=st.sampled_from(TENANT_COUNTRIES),
        verified=st.booleans(),
    ),
    name=st.just("job"),
    kind=st.sampled_from(["training", "inference"]),
    residency=st.one_of(
        st.just(Residency()),
        st.builds(
            Residency,
            countries=st.frozensets(st.sampled_from(DC_COUNTRIES), max_size=3),
            sources=st.just(("dataset-a",)),
        ),
    ),
)


# --- the oracle --------------------------------------------------------------------------


@dataclass
class Expected:
    """What the rules say about one placement, worked out from the YAML data alone."""

    residency_ok: bool
    export_ok: bool
    export_ids: set[str]  # rule ids that may decide the export question
    licence: str | None
    quota_ok: bool
    quota_id: str | None

    @property
    def allowed(self) -> bool:
        return self.residency_ok and self.export_ok and self.quota_ok


def oracle(
    data: dict[str, Any], workload: WorkloadView, place: PlacementView, snapshot: FleetSnapshot
) -> Expected:
    dc = snapshot.data_centers[place.data_center]
    countries = workload.residency.countries
    residency_ok = countries is None or dc.country in countries

    tenant = workload.tenant
    point = (tenant.country, dc.country, class_of(place.chip), tenant.verified)
    section = data.get("export_control", {})
    matched = [r for r in section.get("rules", []) if oracle_matches(r, point)]
    if matched:
        export_ok = all(r["outcome"] != "deny" for r in matched)
        export_ids = {r["id"] for r in matched}
        licences = {r.get("licence") for r in matched}
        assert len(licences) == 1  # a consistent table: matched rules agree
        licence = licences.pop()
    else:
        export_ok = section.get("default", "allow") == "allow"
        export_ids = {section.get("default_id", "EXPORT-DEFAULT")}
        licence = None

    quotas = data.get("quotas", [])
    quota = next((q for q in quotas if q.get("tenant", "*") == tenant.name), None)
    if quota is None:
        quota = next((q for q in quotas if q.get("tenant", "*") == "*"), None)
    quota_ok = True
    if quota is not None:
        held = [a for a in snapshot.allocations if a.tenant == tenant.name]
        total = sum(a.count for a in held) + place.count
        if quota.get("max_accelerators") is not None:
            quota_ok &= total <= quota["max_accelerators"]
        cls = class_of(place.chip)
        if cls in quota.get("per_chip_class", {}):
            in_class = sum(a.count for a in held if class_of(a.chip) == cls) + place.count
            quota_ok &= in_class <= quota["per_chip_class"][cls]
        if place.chip in quota.get("per_chip", {}):
            on_chip = sum(a.count for a in held if a.chip == place.chip) + place.count
            quota_ok &= on_chip <= quota["per_chip"][place.chip]
    return Expected(
        residency_ok,
        export_ok,
        export_ids,
        licence,
        quota_ok,
        quota["id"] if quota is not None else None,
    )


def check_against_oracle(
    verdict: Verdict,
    expected: Expected,
    rules: RuleSet,
) -> None:
    ids = all_rule_ids(rules)
    by_kind = {d.kind: d for d in verdict.decisions}
    assert len(by_kind) == len(verdict.decisions)  # one decision per kind

    if verdict.allowed:
        # the safety direction: nothing allowed that a rule forbids
        assert expected.residency_ok, verdict.sentence
        assert expected.export_ok, verdict.sentence
        assert expected.quota_ok, verdict.sentence
    assert verdict.allowed == expected.allowed, verdict.sentence

    assert by_kind["residency"].rule == rules.residency.id
    assert by_kind["residency"].allowed == expected.residency_ok
    export = by_kind["export_control"]
    assert export.rule in expected.export_ids
    assert export.allowed == expected.export_ok
    assert export.licence == expected.licence
    if expected.quota_id is None:
        assert "quota" not in by_kind
    else:
        assert by_kind["quota"].rule == expected.quota_id
        assert by_kind["quota"].allowed == expected.quota_ok

    for decision in verdict.decisions:
        assert decision.rule in ids
        assert decision.sentence
    assert verdict.refusals == tuple(d for d in verdict.decisions if not d.allowed)
    assert bool(verdict.refusals) == (not verdict.allowed)
    for refusal in verdict.refusals:
        assert f"[{refusal.rule}]" in verdict.sentence


@settings(max_examples=120, deadline=None)
@given(
    rule_data(),
    snapshots(),
    workloads,
    st.integers(min_value=1, max_value=64),
)
def test_every_placement_agrees_with_the_oracle(
    data: dict[str, Any], snapshot: FleetSnapshot, workload: WorkloadView, count: int
) -> None:
    rules = ruleset_from(data)
    for dc in snapshot.data_centers:
        for chip in CHIPS:
            place = PlacementView(dc, chip, count)
            verdict = evaluate_placement(workload, place, snapshot, rules, class_of)
            check_against_oracle(verdict, oracle(data, workload, place, snapshot), rules)


@settings(max_examples=60, deadline=None)
@given(rule_data(), snapshots(), workloads, st.integers(min_value=1, max_value=64))
def test_where_may_run_covers_every_pair_present(
    data: dict[str, Any], snapshot: FleetSnapshot, workload: WorkloadView, count: int
) -> None:
    rules = ruleset_from(data)
    out = where_may_run(workload, count, snapshot, rules, class_of)
    present = {(n.data_center, n.chip) for n in snapshot.nodes if n.chip is not None}
    assert set(out) == present
    for (dc, chip), verdict in out.items():
        place = PlacementView(dc, chip, count)
        assert verdict == evaluate_placement(workload, place, snapshot, rules, class_of)
        check_against_oracle(verdict, oracle(data, workload, place, snapshot), rules)


# --- placements under the default rules --------------------------------------------------

DEFAULTS = default_rules()
WORLD = FleetSnapshot(
    {
        "bj": DataCenterView("bj", "CN", "state"),
        "sg": DataCenterView("sg", "SG", "private"),
        "us": DataCenterView("us", "US", "private"),
    },
    (
        *nodes("bj", ("Ascend 910B", 16), ("H100 SXM", 8)),
        *nodes("sg", ("H100 SXM", 8), ("H20", 8)),
        *nodes("us", ("H100 SXM", 8)),
    ),
)


def workload(
    country: str = "SG", verified: bool = True, residency: frozenset[str] | None = None
) -> WorkloadView:
    return WorkloadView(
        TenantView("acme", country, verified),
        "job",
        "training",
        Residency(residency, ("dataset-a",) if residency is not None else ()),
    )


def test_embargoed_tenant_is_refused_naming_the_rule() -> None:
    verdict = evaluate_placement(
        workload("KP"), PlacementView("us", "H20", 1), WORLD, DEFAULTS, class_of
    )
    assert not verdict.allowed
    assert [d.rule for d in verdict.refusals] == ["EC-EMBARGOED"]
    assert "[EC-EMBARGOED]" in verdict.sentence


def test_unverified_tenant_may_not_use_controlled_chips() -> None:
    w = workload("SG", verified=False)
    h100 = evaluate_placement(w, PlacementView("sg", "H100 SXM", 1), WORLD, DEFAULTS, class_of)
    assert not h100.allowed
    assert "[EC-CONTROLLED-UNVERIFIED]" in h100.sentence
    h20 = evaluate_placement(w, PlacementView("sg", "H20", 1), WORLD, DEFAULTS, class_of)
    assert h20.allowed
    assert {d.rule for d in h20.decisions} == {"RESIDENCY", "EXPORT-DEFAULT", "QUOTA-DEFAULT"}


def test_licensed_placement_carries_the_licence() -> None:
    verdict = evaluate_placement(
        workload("CN"), PlacementView("sg", "H100 SXM", 1), WORLD, DEFAULTS, class_of
    )
    assert verdict.allowed
    (export,) = [d for d in verdict.decisions if d.kind == "export_control"]
    assert export.rule == "EC-CONTROLLED-CN-TENANT-ABROAD"
    assert export.licence == "EXAMPLE-LICENCE-REF-001"
    assert "EXAMPLE-LICENCE-REF-001" in export.sentence


def test_residency_refusals() -> None:
    outside = evaluate_placement(
        workload(residency=frozenset({"CN"})),
        PlacementView("sg", "H20", 1),
        WORLD,
        DEFAULTS,
        class_of,
    )
    assert not outside.allowed
    assert [d.rule for d in outside.refusals] == ["RESIDENCY"]
    assert "dataset-a" in outside.sentence
    inside = evaluate_placement(
        workload(residency=frozenset({"CN"})),
        PlacementView("bj", "Ascend 910B", 1),
        WORLD,
        DEFAULTS,
        class_of,
    )
    assert inside.allowed
    for dc in WORLD.data_centers:
        nowhere = evaluate_placement(
            workload(residency=frozenset()), PlacementView(dc, "H20", 1), WORLD, DEFAULTS, class_of
        )
        assert not nowhere.allowed
        assert "[RESIDENCY]" in nowhere.sentence


def test_quota_counts_what_the_tenant_already_holds() -> None:
    held = FleetSnapshot(
        WORLD.data_centers,
        WORLD.nodes,
        (
            Allocation("acme", "us", "H100 SXM", 200),
            Allocation("acme", "sg", "H20", 300),
            Allocation("other", "us", "H100 SXM", 500),
        ),
    )
    controlled = FleetSnapshot(
        WORLD.data_centers,
        WORLD.nodes,
        (Allocation("acme", "us", "H100 SXM", 150), Allocation("acme", "bj", "Ascend 910C", 50)),
    )
    w = workload("US")
    # 500 held + 12 = 512: at the limit, allowed; one more is refused
    at_limit = evaluate_placement(w, PlacementView("sg", "H20", 12), held, DEFAULTS, class_of)
    assert at_limit.allowed
    over = evaluate_placement(w, PlacementView("sg", "H20", 13), held, DEFAULTS, class_of)
    assert not over.allowed
    assert [d.rule for d in over.refusals] == ["QUOTA-DEFAULT"]
    assert "513" in over.sentence
    # 200 3A090.a held (H100 and Ascend 910C) + 56 = 256: at the class limit; 57 is over
    assert class_of("Ascend 910C") == "3A090.a"
    ok = evaluate_placement(w, PlacementView("us", "H100 SXM", 56), controlled, DEFAULTS, class_of)
    assert ok.allowed
    over_class = evaluate_placement(
        w, PlacementView("us", "H100 SXM", 57), controlled, DEFAULTS, class_of
    )
    assert not over_class.allowed
    assert "3A090.a" in over_class.sentence
    assert "[QUOTA-DEFAULT]" in over_class.sentence


def test_default_deny_names_the_default_rule() -> None:
    rules = rules_from(
        {
            "export_control": {
                "default_id": "EC-CLOSED",
                "default": "deny",
                "rules": [{"id": "EC-SG", "data_center_countries": ["SG"], "outcome": "allow"}],
            }
        }
    )
    sg = evaluate_placement(workload(), PlacementView("sg", "H20", 1), WORLD, rules, class_of)
    assert sg.allowed
    us = evaluate_placement(workload(), PlacementView("us", "H100 SXM", 1), WORLD, rules, class_of)
    assert not us.allowed
    assert [d.rule for d in us.refusals] == ["EC-CLOSED"]
    assert "[EC-CLOSED]" in us.sentence


def test_several_refusals_are_all_named() -> None:
    verdict = evaluate_placement(
        workload("KP", residency=frozenset({"CN"})),
        PlacementView("us", "H100 SXM", 1000),
        WORLD,
        DEFAULTS,
        class_of,
    )
    assert {d.rule for d in verdict.refusals} == {"RESIDENCY", "EC-EMBARGOED", "QUOTA-DEFAULT"}
    for rule in ("RESIDENCY", "EC-EMBARGOED", "QUOTA-DEFAULT"):
        assert f"[{rule}]" in verdict.sentence


# --- fleet changes and the domestic share ------------------------------------------------

STATE_CN = DataCenterView("bj", "CN", "state")


def only_check(checks: list[ShareCheck]) -> ShareCheck:
    assert len(checks) == 1
    return checks[0]


def test_exactly_half_after_a_change_is_refused() -> None:
    before = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 9), ("H100 SXM", 8)))
    after = fleet(
        [STATE_CN],
        nodes("bj", ("MLU370-X8", 9), ("H100 SXM", 8)),
        [NodeView("new", "bj", "H20", 1)],
    )
    check = only_check(check_fleet_change(before, after, {"bj"}, DEFAULTS, CATALOG))
    assert check.rule.id == "CN-STATE-DOMESTIC-COUNT"
    assert check.data_center == "bj"
    assert check.before is not None
    assert check.before.count.value == Fraction(9, 17)
    assert check.after.count.value == Fraction(1, 2)
    assert check.status == "violated"
    assert check.refused
    assert "bj" in check.sentence()
    assert "50.00%" in check.sentence()


def test_adding_domestic_nodes_to_a_violating_dc_is_not_refused() -> None:
    before = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 4), ("H100 SXM", 8)))
    after = fleet(
        [STATE_CN],
        nodes("bj", ("MLU370-X8", 4), ("H100 SXM", 8)),
        [NodeView("new", "bj", "Ascend 910B", 2)],
    )
    check = only_check(check_fleet_change(before, after, {"bj"}, DEFAULTS, CATALOG))
    assert check.status == "violated"  # still below half ...
    assert not check.refused  # ... but better than before


def test_making_a_violating_dc_worse_is_refused() -> None:
    before = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 4), ("H100 SXM", 8)))
    after = fleet(
        [STATE_CN],
        nodes("bj", ("MLU370-X8", 4), ("H100 SXM", 8)),
        [NodeView("new", "bj", "H20", 1)],
    )
    check = only_check(check_fleet_change(before, after, {"bj"}, DEFAULTS, CATALOG))
    assert check.status == "violated"
    assert check.refused


def test_a_new_dc_that_starts_non_compliant_is_refused() -> None:
    before = fleet([])
    after = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 8), ("H100 SXM", 8)))
    check = only_check(check_fleet_change(before, after, {"bj"}, DEFAULTS, CATALOG))
    assert check.before is None
    assert check.status == "violated"
    assert check.refused
    assert "new data center" in check.sentence()


def test_a_new_compliant_or_empty_dc_is_not_refused() -> None:
    before = fleet([])
    good = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 9), ("H100 SXM", 8)))
    check = only_check(check_fleet_change(before, good, {"bj"}, DEFAULTS, CATALOG))
    assert (check.status, check.refused) == ("compliant", False)
    empty = fleet([STATE_CN])
    check = only_check(check_fleet_change(before, empty, {"bj"}, DEFAULTS, CATALOG))
    assert (check.status, check.refused) == ("compliant", False)


def test_filling_an_empty_dc_non_compliantly_is_refused() -> None:
    before = fleet([STATE_CN])
    after = fleet([STATE_CN], nodes("bj", ("H100 SXM", 1)))
    check = only_check(check_fleet_change(before, after, {"bj"}, DEFAULTS, CATALOG))
    assert check.status == "violated"
    assert check.refused


@pytest.mark.parametrize(
    "dc",
    [DataCenterView("bj", "CN", "private"), DataCenterView("bj", "SG", "state")],
)
def test_uncovered_data_centers_have_no_checks(dc: DataCenterView) -> None:
    after = fleet([dc], nodes("bj", ("H100 SXM", 8)))
    assert check_fleet_change(fleet([]), after, {"bj"}, DEFAULTS, CATALOG) == []


def test_only_touched_data_centers_are_checked() -> None:
    other = DataCenterView("sh", "CN", "state")
    bad = fleet([STATE_CN, other], nodes("bj", ("H100 SXM", 8)), nodes("sh", ("H100 SXM", 8)))
    checks = check_fleet_change(bad, bad, {"sh"}, DEFAULTS, CATALOG)
    assert [c.data_center for c in checks] == ["sh"]
    assert check_fleet_change(bad, fleet([other]), {"bj"}, DEFAULTS, CATALOG) == []


def test_unverifiable_compute_share_is_reported_not_refused() -> None:
    rules = rules_from(
        {"domestic_share": [{"id": "DS-COMPUTE", "view": "compute", "more_than": "1/2"}]}
    )
    before = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 8)))
    after = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 8), ("Ascend 910B", 8)))
    check = only_check(check_fleet_change(before, after, {"bj"}, rules, CATALOG))
    assert check.status == "unverifiable"
    assert not check.refused
    assert "Ascend 910B" in check.sentence()


domestic_chips = st.sampled_from(sorted(c.model for c in CATALOG if c.domestic_cn))
foreign_chips = st.sampled_from(sorted(c.model for c in CATALOG if not c.domestic_cn))
groups = st.lists(
    st.tuples(st.one_of(domestic_chips, foreign_chips), st.integers(min_value=0, max_value=12)),
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.none(), groups), groups)
def test_fleet_change_status_and_refusal(
    before_groups: list[tuple[str, int]] | None, after_groups: list[tuple[str, int]]
) -> None:
    before = (
        fleet([STATE_CN], nodes("bj", *before_groups)) if before_groups is not None else fleet([])
    )
    after = fleet([STATE_CN], nodes("bj", *after_groups))
    check = only_check(check_fleet_change(before, after, {"bj"}, DEFAULTS, CATALOG))
    old = count_share(before.nodes) if before_groups is not None else None
    new = count_share(after.nodes)
    assert check.after.count.value == new
    if new is None or new > Fraction(1, 2):
        assert check.status == "compliant"
        assert not check.refused
        return
    assert check.status == "violated"
    if old is None or old > Fraction(1, 2) or new < old:
        # a new or empty data center, one that was compliant, or one that got worse
        assert check.refused
    elif new > old:
        assert not check.refused  # still violating, but improved
    # new == old (still violating, not improved): not pinned down here


# --- usage share -------------------------------------------------------------------------


def test_usage_share_exact_half() -> None:
    share = usage_share([(True, 8, 3600), (False, 4, 7200)])
    assert share == Fraction(1, 2)
    assert isinstance(share, Fraction)
    assert usage_share([(True, 1, 1800.5), (False, 1, 1800.5)]) == Fraction(1, 2)
    assert usage_share([]) is None
    assert usage_share([(True, 0, 10), (False, 3, 0)]) is None
    assert usage_share([(True, 3, 10)]) == 1
    assert usage_share([(False, 3, 10)]) == 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(min_value=0, max_value=64),
            st.integers(min_value=0, max_value=10**6),
        ),
        max_size=10,
    )
)
def test_usage_share_is_exact(intervals: list[tuple[bool, int, int]]) -> None:
    total = sum(n * s for _d, n, s in intervals)
    domestic = sum(n * s for d, n, s in intervals if d)
    share = usage_share([(d, n, float(s)) for d, n, s in intervals])
    assert share == (Fraction(domestic, total) if total else None)


def test_usage_share_has_no_float_drift_at_half() -> None:
    # in binary floats 0.1 + 0.2 > 0.3: read as their binary values, the share would be
    # 10808639105689191/21617278211378381, just over 1/2, and "more than 1/2" would pass
    assert usage_share([(True, 1, 0.1), (True, 1, 0.2), (False, 1, 0.3)]) == Fraction(1, 2)
    assert usage_share([(True, 3, 1800.1), (True, 1, 0.2), (False, 1, 5400.5)]) == Fraction(1, 2)
    assert usage_share([(True, 1, Fraction(1, 3)), (False, 2, Fraction(1, 6))]) == Fraction(1, 2)


def test_growing_a_violating_dc_at_an_unchanged_share_is_refused() -> None:
    before = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 4), ("H100 SXM", 6)))
    after = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 6), ("H100 SXM", 9)))  # 4/10 -> 6/15
    check = only_check(check_fleet_change(before, after, {"bj"}, DEFAULTS, CATALOG))
    assert check.status == "violated"
    assert check.refused


def test_a_new_cost_in_a_violating_dc_is_not_refused() -> None:
    priced = DataCenterView("bj", "CN", "state", {"H100 SXM": (20_000_000, "CNY")})
    before = fleet([STATE_CN], nodes("bj", ("MLU370-X8", 4), ("H100 SXM", 6)))
    after = fleet([priced], nodes("bj", ("MLU370-X8", 4), ("H100 SXM", 6)))
    check = only_check(check_fleet_change(before, after, {"bj"}, DEFAULTS, CATALOG))
    assert check.status == "violated"
    assert not check.refused


def test_a_placement_of_no_accelerators_is_a_caller_error() -> None:
    snapshot = fleet([STATE_CN], nodes("bj", ("H20", 8)))
    workload = WorkloadView(TenantView("t", "CN", True), "w", "training")
    with pytest.raises(ValueError, match="at least one"):
        evaluate_placement(workload, PlacementView("bj", "H20", 0), snapshot, DEFAULTS, class_of)
