"""Money is exact: decimal strings or integers in, integer micro-units stored."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanli.domain.money import Money, parse_amount, parse_currency
from suanli.errors import ValidationError


@given(st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False))
def test_round_trip_through_micros_is_exact(amount: Decimal) -> None:
    m = Money(parse_amount(str(amount), "x"), "CNY")
    assert Money.from_micros(m.micros, "CNY").amount == amount


@pytest.mark.parametrize(
    "bad", [1.5, True, "abc", "-1", "NaN", "Infinity", "0.0000001", None, "1e13"]
)
def test_refused(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_amount(bad, "price")
    assert info.value.field == "price"


def test_currency() -> None:
    assert parse_currency("cny", "c") == "CNY"
    with pytest.raises(ValidationError):
        parse_currency("RMB", "c")
