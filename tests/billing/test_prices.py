"""Price books: the packaged example loads; bad books are refused with field and line."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest

from suanli.billing.prices import (
    PriceBook,
    PriceBooks,
    PriceNotFoundError,
    load_packaged_price_book,
    packaged_price_book_text,
    parse_price_book,
)
from suanli.errors import NotFoundError, ValidationError

HEADER = 'version: "t1"\neffective: 2025-01-01\ncurrency: CNY\n'


def book(body: str = "", header: str = HEADER) -> PriceBook:
    return parse_price_book(header + textwrap.dedent(body).lstrip("\n"), "test.yaml")


def refused(body: str, header: str = HEADER) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        book(body, header)
    return info.value


def line_of(body: str, marker: str, header: str = HEADER) -> int:
    text = header + textwrap.dedent(body).lstrip("\n")
    hits = [i for i, line in enumerate(text.splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


# --- the packaged example ------------------------------------------------------------------


def test_packaged_book_loads_with_exact_prices() -> None:
    b = load_packaged_price_book()
    assert b == parse_price_book(packaged_price_book_text())
    assert b.currency == "CNY"
    assert b.effective == datetime(2025, 1, 1, tzinfo=UTC)
    v3 = b.token_price("deepseek-v3")
    assert (v3.input_per_m, v3.output_per_m, v3.cached_per_m) == (2_000_000, 8_000_000, 500_000)
    qwen = b.token_price("qwen2.5-7b-instruct")
    assert (qwen.input_per_m, qwen.output_per_m, qwen.cached_per_m) == (500_000, 1_000_000, 500_000)
    assert b.token_price("smollm2-135m-instruct").input_per_m < 100_000
    h100 = b.accelerator_price("H100 SXM")
    assert h100.per_hour_micros == 18_000_000
    assert h100.spot_discount == Fraction(2, 5)
    assert h100.hourly(spot=True) == 10_800_000
    assert b.accelerator_price("H20").per_hour_micros == 9_000_000
    assert b.accelerator_price("Ascend 910B").per_hour_micros == 12_000_000
    assert "EXAMPLE" in packaged_price_book_text()


def test_lookups() -> None:
    b = book("""
        tokens:
          "*": {input: "1", output: "2"}
          m: {input: "0.5", output: "1.25", cached: "0.1"}
        accelerators:
          H100: {per_hour: "18"}
    """)
    assert b.token_price("m").model == "m"
    assert b.token_price("m").cached_per_m == 100_000
    assert b.token_price("other").model == "*"
    assert b.token_price("other").output_per_m == 2_000_000
    # chips are stored under their catalog name; aliases find them
    assert list(b.accelerators) == ["H100 SXM"]
    assert b.accelerator_price("h100-sxm5-80gb").chip == "H100 SXM"
    assert b.accelerator_price("H100").hourly(spot=True) == 18_000_000  # no discount given
    with pytest.raises(PriceNotFoundError, match="'H20'") as info:
        b.accelerator_price("H20")
    assert isinstance(info.value, NotFoundError)


def test_a_model_without_price_or_default_is_named() -> None:
    b = book('tokens:\n  m: {input: "1", output: "1"}\n')
    with pytest.raises(PriceNotFoundError, match=r"'t1'.*model 'nope'.*\"\*\" default"):
        b.token_price("nope")


def test_cached_defaults_to_input_and_integers_are_exact() -> None:
    b = book('tokens:\n  m: {input: 3, output: "0.000001"}\n')
    price = b.token_price("m")
    assert (price.input_per_m, price.cached_per_m, price.output_per_m) == (3_000_000,) * 2 + (1,)


@pytest.mark.parametrize(
    ("effective", "expected"),
    [
        ("2025-03-01", datetime(2025, 3, 1, tzinfo=UTC)),
        ("2025-03-01T08:00:00+08:00", datetime(2025, 3, 1, tzinfo=UTC)),
        ("2025-03-01 00:00:00", datetime(2025, 3, 1, tzinfo=UTC)),  # no offset: UTC
        ('"2025-03-01T00:00:00Z"', datetime(2025, 3, 1, tzinfo=UTC)),
    ],
)
def test_effective_dates(effective: str, expected: datetime) -> None:
    b = parse_price_book(f'version: "x"\neffective: {effective}\ncurrency: usd\n')
    assert b.effective == expected
    assert b.effective.tzinfo is UTC
    assert b.currency == "USD"


# --- refusals name the field and line ------------------------------------------------------

REFUSALS = [
    # (body, field, marker of the line at fault, message fragment)
    ('tokens:\n  m: {input: 0.5, output: "1"}\n', "tokens.m.input", "m: {", "floats"),
    ('tokens:\n  m:\n    input: "-1"\n    output: "1"\n', "tokens.m.input", "-1", "negative"),
    ('tokens:\n  m:\n    input: "1"\n    output: "1e400x"\n', "tokens.m.output", "1e400x", "not a"),
    (
        'tokens:\n  m:\n    input: "0.0000001"\n    output: "1"\n',
        "tokens.m.input",
        "0.0000001",
        "6 decimal",
    ),
    ('tokens:\n  m:\n    input: "1"\n', "tokens.m.output", "m:", "required"),
    (
        'tokens:\n  m:\n    input: "1"\n    output: "1"\n    outptu: "2"\n',
        "tokens.m.outptu",
        "outptu",
        "Extra",
    ),
    ('tokens:\n  "": {input: "1", output: "1"}\n', "tokens.", '""', "model id"),
    (
        'tokens:\n  m: {input: "1", output: "1"}\n  m: {input: "2", output: "2"}\n',
        "tokens.m",
        '"2"',
        "twice",
    ),
    (
        'accelerators:\n  H10: {per_hour: "1"}\n',
        "accelerators.H10",
        "H10",
        "did you mean 'H100 SXM'",
    ),
    (
        'accelerators:\n  H100: {per_hour: "1"}\n  H100 SXM: {per_hour: "2"}\n',
        "accelerators.H100 SXM",
        "SXM",
        "same chip",
    ),
    (
        'accelerators:\n  H20:\n    per_hour: "9"\n    spot_discount: "1"\n',
        "accelerators.H20.spot_discount",
        "spot",
        "below 1",
    ),
    (
        'accelerators:\n  H20:\n    per_hour: "9"\n    spot_discount: 0.4\n',
        "accelerators.H20.spot_discount",
        "spot",
        "floats",
    ),
    ('accelerators:\n  H20:\n    per_hour: "-9"\n', "accelerators.H20.per_hour", "-9", "negative"),
    (
        'accelerators:\n  H20:\n    per_hour: "9"\n    per_hr: "9"\n',
        "accelerators.H20.per_hr",
        "per_hr",
        "Extra",
    ),
    ("surcharge: 1\n", "surcharge", "surcharge", "Extra"),
]


@pytest.mark.parametrize(("body", "field", "marker", "fragment"), REFUSALS)
def test_refusals(body: str, field: str, marker: str, fragment: str) -> None:
    err = refused(body)
    assert err.field == field
    assert err.line == line_of(body, marker)
    assert fragment in err.message
    assert err.message.startswith(f"test.yaml: line {err.line}: ")


@pytest.mark.parametrize(
    ("header", "field", "line", "fragment"),
    [
        ("version: 1\neffective: 2025-01-01\ncurrency: CNY\n", "version", 1, "quote it"),
        ('version: "a"\neffective: soon\ncurrency: CNY\n', "effective", 2, "a date"),
        ('version: "a"\neffective: 2025-01-01\ncurrency: XYZ\n', "currency", 3, "unknown currency"),
        ('version: "a"\ncurrency: CNY\n', "effective", None, "required"),
        (
            'version: "a"\neffective: 2025-01-01\neffective: 2025-02-01\ncurrency: CNY\n',
            "effective",
            3,
            "twice",
        ),
    ],
)
def test_header_refusals(header: str, field: str, line: int | None, fragment: str) -> None:
    err = refused("", header)
    assert err.field == field
    if line is not None:
        assert err.line == line
    assert fragment in err.message


@pytest.mark.parametrize("text", ["- a list", "a: [", "x: &a 1\ny: *a\n", ""])
def test_not_a_price_book(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_price_book(text)


# --- which book is in effect ---------------------------------------------------------------


def _dated(version: str, effective: str) -> PriceBook:
    return parse_price_book(f'version: "{version}"\neffective: {effective}\ncurrency: CNY\n')


def test_the_book_in_effect_is_the_latest_started() -> None:
    books = PriceBooks(
        [
            _dated("v2", "2025-06-01"),
            _dated("v1", "2025-01-01"),
            _dated("v3", "2025-09-01T12:00:00Z"),
        ]
    )
    assert [b.version for b in books] == ["v1", "v2", "v3"]
    assert len(books) == 3

    def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> str:
        return books.at(datetime(y, m, d, hh, mm, ss, tzinfo=UTC)).version

    assert at(2025, 1, 1) == "v1"  # effective is inclusive
    assert at(2025, 5, 31, 23, 59, 59) == "v1"
    assert at(2025, 6, 1) == "v2"
    assert at(2025, 9, 1, 11, 59, 59) == "v2"
    assert at(2025, 9, 1, 12) == "v3"
    assert at(2030, 1, 1) == "v3"
    beijing = timezone(timedelta(hours=8))
    assert books.at(datetime(2025, 6, 1, 7, 59, tzinfo=beijing)).version == "v1"
    assert books.at(datetime(2025, 6, 1, 0, 0)).version == "v2"  # naive: UTC
    with pytest.raises(PriceNotFoundError, match="no price book is in effect"):
        books.at(datetime(2024, 12, 31, 23, 59, tzinfo=UTC))
    with pytest.raises(PriceNotFoundError):
        PriceBooks([]).at(datetime(2025, 1, 1, tzinfo=UTC))


def test_books_must_differ_in_date_and_version() -> None:
    with pytest.raises(ValidationError, match="same moment"):
        PriceBooks([_dated("a", "2025-01-01"), _dated("b", "2025-01-01T00:00:00Z")])
    with pytest.raises(ValidationError, match="twice"):
        PriceBooks([_dated("a", "2025-01-01"), _dated("a", "2025-02-01")])
