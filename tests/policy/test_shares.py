"""Domestic shares are exact Fractions; a view that cannot be computed says why."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.policy.evaluate import rule_status
from suanli.policy.rules import DomesticShareRule
from suanli.policy.shares import Shares, domestic_shares
from suanli.policy.snapshot import NodeView
from tests.policy.helpers import CATALOG, CHIPS, count_share, nodes

MORE_THAN_HALF = DomesticShareRule(id="R-MORE", more_than="1/2")
AT_LEAST_HALF = DomesticShareRule(id="R-LEAST", at_least="1/2")


def shares(*groups: tuple[str, int], costs: dict[str, tuple[int, str]] | None = None) -> Shares:
    return domestic_shares(nodes("dc", *groups), costs or {}, CATALOG)


def test_exactly_half_is_not_more_than_half() -> None:
    s = shares(("MLU370-X8", 8), ("H100 SXM", 8))
    assert s.count.value == Fraction(1, 2)
    assert isinstance(s.count.value, Fraction)
    assert (s.count.domestic, s.count.total) == (Fraction(8), Fraction(16))
    assert rule_status(MORE_THAN_HALF, s) == "violated"
    assert rule_status(AT_LEAST_HALF, s) == "compliant"
    assert not MORE_THAN_HALF.satisfied(Fraction(1, 2))
    assert AT_LEAST_HALF.satisfied(Fraction(1, 2))


def test_exactly_half_spread_over_many_nodes() -> None:
    # 1+2+5 domestic against 3+5 foreign, in several nodes of several chips
    s = shares(
        ("Ascend 910B", 1), ("MLU590", 2), ("Ascend 910B", 5), ("H20", 3), ("A100 80GB SXM", 5)
    )
    assert s.count.value == Fraction(1, 2)
    assert rule_status(MORE_THAN_HALF, s) == "violated"


def test_one_more_domestic_is_compliant() -> None:
    s = shares(("MLU370-X8", 9), ("H100 SXM", 8))
    assert s.count.value == Fraction(9, 17)
    assert rule_status(MORE_THAN_HALF, s) == "compliant"
    assert rule_status(AT_LEAST_HALF, s) == "compliant"
    s = shares(("MLU370-X8", 7), ("H100 SXM", 8))
    assert rule_status(AT_LEAST_HALF, s) == "violated"


def test_nodes_without_chip_or_accelerators_are_ignored() -> None:
    node_list = (
        NodeView("a", "dc", None, 8),
        NodeView("b", "dc", "H100 SXM", 0),
        NodeView("c", "dc", "MLU370-X8", 2),
        NodeView("d", "dc", "H20", 2),
    )
    s = domestic_shares(node_list, {}, CATALOG)
    assert s.count.value == Fraction(1, 2)
    assert s.count.total == 4


def test_no_accelerators_is_unknown_and_compliant() -> None:
    s = shares()
    for view in ("count", "compute", "cost"):
        assert s.view(view).value is None
        assert s.view(view).note
    assert rule_status(MORE_THAN_HALF, s) == "compliant"


def test_compute_view_is_exact() -> None:
    # BR104 512 + 3 x Ascend 310P 140 = 932 domestic; 5 x RTX 4090 165.2 + 5 x P100 21.2 = 932
    s = shares(
        ("BR104", 1),
        ("Ascend 310P (Atlas 300I Duo card)", 3),
        ("GeForce RTX 4090", 5),
        ("Tesla P100 16GB", 5),
    )
    assert s.compute.value == Fraction(1, 2)
    assert (s.compute.domestic, s.compute.total) == (Fraction(932), Fraction(1864))
    assert isinstance(s.compute.value, Fraction)
    rule = DomesticShareRule(id="R", view="compute", more_than="1/2")
    assert rule_status(rule, s) == "violated"
    assert s.count.value == Fraction(4, 14)


def test_compute_view_unknown_names_the_chip_without_tflops() -> None:
    assert CATALOG.get("Ascend 910B").dense_16bit_tflops is None
    s = shares(("Ascend 910B", 8), ("H100 SXM", 4), ("MLU590", 1))
    assert s.compute.value is None
    assert "Ascend 910B" in s.compute.note
    assert "MLU590" in s.compute.note
    assert "H100 SXM" not in s.compute.note
    assert "unknown" in s.compute.text()
    assert s.count.value == Fraction(9, 13)
    rule = DomesticShareRule(id="R", view="compute", at_least="1/2")
    assert rule_status(rule, s) == "unverifiable"


def test_cost_view_uses_the_costs() -> None:
    costs = {"MLU370-X8": (3_000_000, "CNY"), "H100 SXM": (10_000_000, "CNY")}
    s = shares(("MLU370-X8", 10), ("H100 SXM", 3), costs=costs)
    assert s.cost.value == Fraction(30, 60)
    assert (s.cost.domestic, s.cost.total) == (Fraction(30_000_000), Fraction(60_000_000))
    assert s.count.value == Fraction(10, 13)
    rule = DomesticShareRule(id="R", view="cost", more_than="1/2")
    assert rule_status(rule, s) == "violated"
    s = shares(("MLU370-X8", 11), ("H100 SXM", 3), costs=costs)
    assert s.cost.value == Fraction(33, 63)
    assert rule_status(rule, s) == "compliant"


def test_cost_view_unknown_when_a_chip_has_no_cost() -> None:
    s = shares(("MLU370-X8", 1), ("H20", 1), costs={"MLU370-X8": (1, "CNY")})
    assert s.cost.value is None
    assert "H20" in s.cost.note


def test_cost_view_unknown_with_mixed_currencies() -> None:
    costs = {"MLU370-X8": (3_000_000, "CNY"), "H100 SXM": (1_000_000, "USD")}
    s = shares(("MLU370-X8", 1), ("H100 SXM", 1), costs=costs)
    assert s.cost.value is None
    assert "CNY" in s.cost.note
    assert "USD" in s.cost.note
    assert "unknown" in s.cost.text()
    rule = DomesticShareRule(id="R", view="cost", at_least="1/2")
    assert rule_status(rule, s) == "unverifiable"


def test_share_text() -> None:
    assert shares(("MLU370-X8", 1), ("H20", 2)).count.text() == "33.33%"


# --- properties --------------------------------------------------------------------------

node_lists = st.lists(
    st.builds(
        NodeView,
        name=st.text("abc", min_size=1, max_size=3),
        data_center=st.just("dc"),
        chip=st.one_of(st.none(), st.sampled_from(CHIPS)),
        count=st.integers(min_value=0, max_value=64),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(node_lists)
def test_count_share_is_the_exact_fraction(node_list: list[NodeView]) -> None:
    s = domestic_shares(node_list, {}, CATALOG)
    expected = count_share(node_list)
    assert s.count.value == expected
    if expected is not None:
        assert isinstance(s.count.value, Fraction)
        assert s.count.domestic / s.count.total == expected


FLOPS = {chip.model: chip.dense_16bit_tflops for chip in CATALOG}
IS_DOMESTIC = {chip.model: chip.domestic_cn for chip in CATALOG}


@settings(max_examples=150, deadline=None)
@given(node_lists)
def test_compute_share_is_exact_or_names_what_is_missing(node_list: list[NodeView]) -> None:
    s = domestic_shares(node_list, {}, CATALOG)
    live = [(n.chip, n.count) for n in node_list if n.chip is not None and n.count > 0]
    missing = {chip for chip, _n in live if FLOPS[chip] is None}
    if missing:
        assert s.compute.value is None
        for chip in missing:
            assert chip in s.compute.note
        return
    total = sum(n * Fraction(FLOPS[chip] or 0) for chip, n in live)
    domestic = sum(n * Fraction(FLOPS[chip] or 0) for chip, n in live if IS_DOMESTIC[chip])
    assert s.compute.value == (Fraction(domestic) / total if total else None)
    if total:
        assert isinstance(s.compute.value, Fraction)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=0, max_value=500),
    st.integers(min_value=0, max_value=500),
    st.fractions(min_value=0, max_value=1, max_denominator=50),
)
def test_thresholds_compare_exactly(domestic: int, foreign: int, threshold: Fraction) -> None:
    s = shares(*[g for g in (("MLU370-X8", domestic), ("H20", foreign)) if g[1]])
    more = DomesticShareRule(id="M", more_than=str(threshold))
    least = DomesticShareRule(id="L", at_least=str(threshold))
    if domestic + foreign == 0:
        assert rule_status(more, s) == rule_status(least, s) == "compliant"
        return
    share = Fraction(domestic, domestic + foreign)
    assert rule_status(more, s) == ("compliant" if share > threshold else "violated")
    assert rule_status(least, s) == ("compliant" if share >= threshold else "violated")


@pytest.mark.parametrize("chip", CHIPS)
def test_every_catalog_chip_counts_by_its_domestic_flag(chip: str) -> None:
    s = shares((chip, 3))
    assert s.count.value == (1 if CATALOG.get(chip).domestic_cn else 0)
