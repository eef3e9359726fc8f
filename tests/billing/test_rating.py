"""Rating: usage into micro-units, rounded once, parts that add up, nothing dropped."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.billing.prices import PriceBook, TokenPrice, parse_price_book
from suanli.billing.rating import (
    Charge,
    UsageLine,
    allocate,
    exact_usage_cost,
    operator_cost,
    rate_accelerator_time,
    rate_usage,
    round_half_even,
)
from suanli.errors import NotFoundError, ValidationError

BOOK = parse_price_book(
    """
version: "r1"
effective: 2025-01-01
currency: CNY
tokens:
  deepseek-v3: {input: "2", output: "8", cached: "0.5"}
  half: {input: "0.5", output: "0.5"}
  odd: {input: "0.000003", output: "1.234567", cached: "0.000001"}
accelerators:
  H100 SXM: {per_hour: "18", spot_discount: "0.4"}
  H20: {per_hour: "9.000001"}
"""
)
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def usage(
    prompt: int = 0,
    completion: int = 0,
    cached: int = 0,
    model: str = "deepseek-v3",
    status: int = 200,
    outcome: str = "ok",
    rid: str = "r-1",
) -> UsageLine:
    return UsageLine(rid, 7, 3, model, prompt, completion, cached, status, outcome, T0)


def parts(c: Charge) -> tuple[int, int, int]:
    return (c.input_micros, c.cached_micros, c.output_micros)


# --- exact examples ------------------------------------------------------------------------


def test_round_half_even() -> None:
    halves = [Fraction(n, 2) for n in range(-7, 8)]
    assert [round_half_even(h) for h in halves] == [round(h) for h in halves]
    assert round_half_even(Fraction(1, 2)) == 0
    assert round_half_even(Fraction(3, 2)) == 2
    assert round_half_even(Fraction(5, 2)) == 2
    assert round_half_even(Fraction(2_500_001, 1_000_000)) == 3


@pytest.mark.parametrize(
    ("prompt", "completion", "cached", "model", "amount"),
    [
        (1, 0, 0, "deepseek-v3", 2),  # 1 token at 2/M = 2 micro-units
        (0, 1, 0, "deepseek-v3", 8),
        (1, 0, 1, "deepseek-v3", 0),  # 0.5 -> half-even -> 0
        (3, 0, 3, "deepseek-v3", 2),  # 1.5 -> 2
        (5, 0, 5, "deepseek-v3", 2),  # 2.5 -> 2
        (1, 0, 0, "half", 0),
        (3, 0, 0, "half", 2),
        (1_000_000, 1_000_000, 0, "deepseek-v3", 10_000_000),  # 2 + 8 yuan
        (1_000_000, 0, 400_000, "deepseek-v3", 1_400_000),  # 0.6M x 2 + 0.4M x 0.5
        (0, 0, 0, "deepseek-v3", 0),
    ],
)
def test_examples(prompt: int, completion: int, cached: int, model: str, amount: int) -> None:
    c = rate_usage(usage(prompt, completion, cached, model), BOOK)
    assert c.amount_micros == amount
    assert sum(parts(c)) == amount
    assert (c.currency, c.price_version, c.tenant_id, c.model) == ("CNY", "r1", 7, model)


def test_parts_are_rounded_once_together() -> None:
    # each part alone is 0.5 (which would round to 0 each); together 1.5 -> 2
    c = rate_usage(usage(prompt=2, cached=1, completion=1, model="half"), BOOK)
    assert c.amount_micros == 2
    assert parts(c) == (1, 1, 0)  # largest remainder; ties go to the earlier part


def test_cached_tokens_are_priced_at_the_cached_price() -> None:
    c = rate_usage(usage(prompt=1000, cached=600, completion=10), BOOK)
    assert parts(c) == (800, 300, 80)  # 400 x 2, 600 x 0.5, 10 x 8 (per million)
    assert c.amount_micros == 1180
    full = rate_usage(usage(prompt=1000, cached=0, completion=10), BOOK)
    assert full.amount_micros == 2080


def test_more_cached_than_prompt_is_refused() -> None:
    with pytest.raises(ValidationError, match="cached tokens are part of the prompt") as info:
        rate_usage(usage(prompt=5, cached=6), BOOK)
    assert info.value.field == "cached_tokens"
    with pytest.raises(ValidationError):
        rate_usage(usage(prompt=-1), BOOK)


def test_unpriced_model_is_named() -> None:
    with pytest.raises(NotFoundError, match="'nope'"):
        rate_usage(usage(1, 1, model="nope"), BOOK)


def test_failed_before_producing_anything_is_free() -> None:
    for status in (400, 429, 500, 502, 503, 499):
        c = rate_usage(usage(5000, 0, status=status, outcome="error"), BOOK)
        assert c.amount_micros == 0
        assert parts(c) == (0, 0, 0)
    assert exact_usage_cost(usage(5000, 0, status=503, outcome="error"), BOOK) == 0


def test_interrupted_stream_pays_for_what_it_produced() -> None:
    done = rate_usage(usage(100, 40), BOOK)
    cut = rate_usage(usage(100, 40, status=200, outcome="interrupted"), BOOK)
    cut_error = rate_usage(usage(100, 40, status=502, outcome="interrupted"), BOOK)
    assert cut.amount_micros == cut_error.amount_micros == done.amount_micros == 200 + 320
    # an ok request that produced nothing still pays for its prompt
    assert rate_usage(usage(100, 0), BOOK).amount_micros == 200


def test_accelerator_time() -> None:
    # 18/h = 5 micro-units per second
    assert rate_accelerator_time("H100 SXM", 1, BOOK) == 5000
    assert rate_accelerator_time("H100", 3600, BOOK) == 18_000_000
    assert rate_accelerator_time("H100 SXM", 3600, BOOK, spot=True) == 10_800_000
    assert rate_accelerator_time("H100 SXM", Fraction(1, 10_000), BOOK) == 0  # 0.5 -> 0
    assert rate_accelerator_time("H100 SXM", Fraction(3, 10_000), BOOK) == 2  # 1.5 -> 2
    # 9.000001/h for 1800 s = 4.5000005 -> 4500000.5 micro-units -> half-even 4500000
    assert rate_accelerator_time("H20", 1800, BOOK) == 4_500_000
    assert rate_accelerator_time("H20", 5400, BOOK) == 13_500_002  # 13500001.5 -> even
    with pytest.raises(NotFoundError):
        rate_accelerator_time("Ascend 910B", 1, BOOK)
    with pytest.raises(ValidationError, match="floats"):
        rate_accelerator_time("H20", 1.5, BOOK)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="negative"):
        rate_accelerator_time("H20", -1, BOOK)


def test_operator_cost() -> None:
    assert operator_cost(12_000_000, 3600) == 12_000_000
    assert operator_cost(12_000_000, 1) == 3333  # 3333.33...
    assert operator_cost(1800, 1) == 0  # 0.5 -> 0
    assert operator_cost(5400, 1) == 2  # 1.5 -> 2
    assert operator_cost(7, Fraction(3600, 7)) == 1
    with pytest.raises(ValidationError):
        operator_cost(-1, 1)


def test_allocate_refuses_a_total_that_is_not_the_rounded_sum() -> None:
    with pytest.raises(ValueError, match="rounded sum"):
        allocate(5, (Fraction(1), Fraction(1)))


# --- properties ----------------------------------------------------------------------------

price = st.integers(min_value=0, max_value=200_000_000)  # up to 200 per million tokens


@st.composite
def priced_usage(draw: st.DrawFn) -> tuple[UsageLine, PriceBook]:
    p_in, p_out, p_cached = draw(price), draw(price), draw(price)

    book = PriceBook(
        version="p",
        effective=T0,
        currency="CNY",
        tokens=MappingProxyType({"m": TokenPrice("m", p_in, p_out, p_cached)}),
        accelerators=MappingProxyType({}),
    )
    prompt = draw(st.integers(0, 2_000_000))
    cached = draw(st.integers(0, prompt))
    completion = draw(st.integers(0, 500_000))
    status = draw(st.sampled_from([200, 200, 200, 400, 499, 500]))
    outcome = "ok" if status == 200 else draw(st.sampled_from(["error", "interrupted"]))
    line = UsageLine("r", 1, 1, "m", prompt, completion, cached, status, outcome, T0)
    return line, book


@settings(max_examples=300, deadline=None)
@given(priced_usage())
def test_charge_is_the_exact_cost_rounded_once(case: tuple[UsageLine, PriceBook]) -> None:
    line, book = case
    c = rate_usage(line, book)
    exact = exact_usage_cost(line, book)
    assert c.amount_micros == round(exact)  # Python rounds a Fraction half-to-even
    assert abs(c.amount_micros - exact) <= Fraction(1, 2)
    assert sum(parts(c)) == c.amount_micros
    assert all(p >= 0 for p in parts(c))
    if line.billable:
        price = book.token_price("m")
        exact_parts = (
            Fraction((line.prompt_tokens - line.cached_tokens) * price.input_per_m, 10**6),
            Fraction(line.cached_tokens * price.cached_per_m, 10**6),
            Fraction(line.completion_tokens * price.output_per_m, 10**6),
        )
        for got, want in zip(parts(c), exact_parts, strict=True):
            assert abs(got - want) < 1
    # streaming, interruption and the credential change nothing about the price
    assert rate_usage(replace(line, outcome="interrupted", credential_id=9), book) == c


@settings(max_examples=60, deadline=None)
@given(st.lists(priced_usage(), min_size=1, max_size=40))
def test_rounding_error_over_many_charges_is_bounded(
    cases: list[tuple[UsageLine, PriceBook]],
) -> None:
    total = sum(rate_usage(line, book).amount_micros for line, book in cases)
    exact = sum((exact_usage_cost(line, book) for line, book in cases), Fraction(0))
    assert abs(total - exact) <= Fraction(len(cases), 2)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 100_000_000),
    st.fractions(min_value=0, max_value=10**6, max_denominator=10**6),
)
def test_time_is_prorated_exactly(per_hour: int, seconds: Fraction) -> None:
    cost = operator_cost(per_hour, seconds)
    exact = per_hour * seconds / 3600
    assert cost == round(exact)
    assert abs(cost - exact) <= Fraction(1, 2)


@settings(max_examples=300, deadline=None)
@given(
    prompt=st.integers(0, 10**9),
    cached_share=st.fractions(0, 1),
    completion=st.integers(0, 10**9),
    prices=st.tuples(*(st.integers(0, 10**9) for _ in range(3))),
)
def test_the_integer_fast_path_equals_the_exact_fraction_rule(
    prompt: int, cached_share: Fraction, completion: int, prices: tuple[int, int, int]
) -> None:
    from suanli.billing import rating

    cached = int(prompt * cached_share)
    price = TokenPrice("m", prices[0], prices[1], prices[2])
    book = replace(BOOK, tokens=MappingProxyType({"m": price}))
    line = UsageLine("r", 1, 1, "m", prompt, completion, cached, 200, "ok", datetime.now(UTC))
    parts = rating._parts(line, book)
    amount = round_half_even(sum(parts, Fraction(0)))
    assert rating._integer_charge(line, book) == (amount, *allocate(amount, parts))
