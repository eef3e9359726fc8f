"""Price books: what a tenant pays per million tokens and per accelerator-hour.

A price book is a YAML document with a ``version``, the moment it takes ``effective``
(a date means midnight UTC; a datetime without an offset is read as UTC) and one
``currency``::

    version: example-2025.1
    effective: 2025-01-01
    currency: CNY
    tokens:                       # per model id; "*" prices every model not listed
      deepseek-v3: {input: "2", output: "8", cached: "0.5"}   # per million tokens
    accelerators:                 # per chip model of the catalog (aliases are accepted)
      H100 SXM: {per_hour: "18", spot_discount: "0.4"}       # spot: 40% off

Money is written as decimal strings (or integers); floats are refused because they cannot
hold most decimal prices exactly. ``cached`` defaults to ``input``; ``spot_discount`` is a
fraction in [0, 1) and defaults to 0. Unknown fields, negative prices, more than six
decimal places and chips the catalog does not know are refused, naming the field and line.

Prices are held exactly: token prices as integer micro-units per million tokens,
accelerator prices as integer micro-units per hour with an exact ``Fraction`` discount.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from fractions import Fraction
from importlib import resources
from itertools import pairwise
from types import MappingProxyType
from typing import Annotated

import yaml
from pydantic import BeforeValidator, Field

from suanli.catalog.chips import load_catalog
from suanli.domain import money
from suanli.domain.specs import Spec
from suanli.domain.yamldoc import Lines, error_at, parse_yaml, validate
from suanli.errors import CatalogError, NotFoundError, SuanliError, ValidationError

__all__ = [
    "DEFAULT_MODEL",
    "AcceleratorPrice",
    "PriceBook",
    "PriceBooks",
    "PriceNotFoundError",
    "TokenPrice",
    "load_packaged_price_book",
    "packaged_price_book_text",
    "parse_price_book",
    "utc",
]

DEFAULT_MODEL = "*"
MAX_MODEL_ID = 200  # the length of a usage record's model column


def utc(when: datetime) -> datetime:
    """``when`` in UTC; a naive datetime is taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


class PriceNotFoundError(NotFoundError):
    """A price book has no price for a model or chip, or no book is in effect yet."""

    code = "price_not_found"

    def __init__(self, kind: str, key: str, message: str) -> None:
        super().__init__(kind, key)
        self.message = message
        self.args = (message,)


# --- the YAML shape ------------------------------------------------------------------------


def _price(value: object) -> Decimal:
    try:
        return money.parse_amount(value, "price")
    except ValidationError as exc:
        raise ValueError(exc.message) from None


def _currency(value: object) -> str:
    try:
        return money.parse_currency(value, "currency")
    except ValidationError as exc:
        raise ValueError(exc.message) from None


def _discount(value: object) -> Fraction:
    if isinstance(value, bool | float):
        raise ValueError('write a discount as a decimal string such as "0.4" (floats are inexact)')
    if not isinstance(value, str | int):
        raise ValueError('a discount is a decimal string such as "0.4"')
    try:
        out = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{value!r} is not a number") from None
    if not 0 <= out < 1:
        raise ValueError("a discount is a fraction at least 0 and below 1")
    return out


def _effective(value: object) -> datetime:
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    if isinstance(value, str):
        try:
            return utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            pass
    raise ValueError("effective is a date (2025-01-01) or a datetime (2025-01-01T08:00:00Z)")


def _version(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError('the version is text: quote it, e.g. "2025.1"')
    return value


Price = Annotated[Decimal, BeforeValidator(_price)]
Discount = Annotated[Fraction, BeforeValidator(_discount)]
Effective = Annotated[datetime, BeforeValidator(_effective)]
Currency = Annotated[str, BeforeValidator(_currency)]


class _TokenSpec(Spec):
    input: Price
    output: Price
    cached: Price | None = None


class _AcceleratorSpec(Spec):
    per_hour: Price
    spot_discount: Discount = Fraction(0)


class _BookSpec(Spec):
    version: Annotated[str, BeforeValidator(_version), Field(min_length=1, max_length=64)]
    effective: Effective
    currency: Currency
    description: str = ""
    tokens: dict[str, _TokenSpec] = Field(default_factory=dict)
    accelerators: dict[str, _AcceleratorSpec] = Field(default_factory=dict)


# --- the exact, immutable book -------------------------------------------------------------


def _micros(amount: Decimal) -> int:
    out = amount * money.MICROS
    assert out == out.to_integral_value()  # parse_amount allows six decimals at most
    return int(out)


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """Micro-units per million tokens; ``model`` is the key it was found under."""

    model: str
    input_per_m: int
    output_per_m: int
    cached_per_m: int


@dataclass(frozen=True, slots=True)
class AcceleratorPrice:
    """Micro-units per accelerator-hour of ``chip`` (a catalog model name)."""

    chip: str
    per_hour_micros: int
    spot_discount: Fraction = Fraction(0)

    def hourly(self, spot: bool = False) -> Fraction:
        """Exact micro-units per hour, after the spot discount when ``spot``."""
        if spot:
            return self.per_hour_micros * (1 - self.spot_discount)
        return Fraction(self.per_hour_micros)


@dataclass(frozen=True)
class PriceBook:
    version: str
    effective: datetime  # UTC
    currency: str
    tokens: Mapping[str, TokenPrice] = field(hash=False)
    accelerators: Mapping[str, AcceleratorPrice] = field(hash=False)
    description: str = ""

    def token_price(self, model: str) -> TokenPrice:
        """The price of ``model``, else the ``"*"`` default; ``PriceNotFoundError`` if neither."""
        price = self.tokens.get(model) or self.tokens.get(DEFAULT_MODEL)
        if price is None:
            raise PriceNotFoundError(
                "token price",
                model,
                f"price book {self.version!r} has no token price for model {model!r} "
                f'and no "{DEFAULT_MODEL}" default',
            )
        return price

    def accelerator_price(self, chip: str) -> AcceleratorPrice:
        """The price of ``chip`` (model name or alias); ``PriceNotFoundError`` if absent."""
        found = load_catalog().find(chip)
        price = self.accelerators.get(found.model if found is not None else chip)
        if price is None:
            raise PriceNotFoundError(
                "accelerator price",
                chip,
                f"price book {self.version!r} has no price for accelerator {chip!r}",
            )
        return price


def _check_chips(spec: _BookSpec, lines: Lines) -> dict[str, AcceleratorPrice]:
    catalog = load_catalog()
    out: dict[str, AcceleratorPrice] = {}
    first_key: dict[str, str] = {}
    for key, acc in spec.accelerators.items():
        loc = ("accelerators", key)
        chip = catalog.find(key)
        if chip is None:
            suggestions = catalog.suggest(key)
            hint = f"; did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""
            raise error_at(f"accelerators: unknown chip {key!r}{hint}", loc, lines)
        if chip.model in out:
            raise error_at(
                f"accelerators: {key!r} and {first_key[chip.model]!r} name the same chip "
                f"({chip.model!r}); price it once",
                loc,
                lines,
            )
        first_key[chip.model] = key
        out[chip.model] = AcceleratorPrice(chip.model, _micros(acc.per_hour), acc.spot_discount)
    return out


def _check_tokens(spec: _BookSpec, lines: Lines) -> dict[str, TokenPrice]:
    out: dict[str, TokenPrice] = {}
    for model, tok in spec.tokens.items():
        if not model.strip() or len(model) > MAX_MODEL_ID or model != model.strip():
            raise error_at(
                f"tokens: {model!r} is not a model id (1-{MAX_MODEL_ID} characters, no "
                "surrounding spaces)",
                ("tokens", model),
                lines,
            )
        cached = tok.input if tok.cached is None else tok.cached
        out[model] = TokenPrice(model, _micros(tok.input), _micros(tok.output), _micros(cached))
    return out


def _check_unique_keys(text: str) -> None:
    """YAML keeps the last of two equal keys; in a price list that hides a mistake."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    stack: list[tuple[yaml.Node, str]] = [] if root is None else [(root, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[object] = set()
            for key, value in node.value:
                where = f"{path}.{key.value}" if path else str(key.value)
                if key.value in seen:
                    raise ValidationError(f"{where}: given twice", where, key.start_mark.line + 1)
                seen.add(key.value)
                stack.append((value, where))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))


def parse_price_book(text: str, origin: str = "price book") -> PriceBook:
    """Parse and check a price book; a ``ValidationError`` names ``origin``, field and line."""
    try:
        data, lines = parse_yaml(text, origin)
        _check_unique_keys(text)
        if not isinstance(data, dict):
            raise ValidationError(
                "a price book is a YAML mapping with version, effective and currency"
            )
        spec = validate(_BookSpec, data, lines)
        tokens = _check_tokens(spec, lines)
        accelerators = _check_chips(spec, lines)
    except ValidationError as exc:
        where = f"line {exc.line}: " if exc.line is not None else ""
        raise ValidationError(f"{origin}: {where}{exc.message}", exc.field, exc.line) from None
    return PriceBook(
        version=spec.version,
        effective=spec.effective,
        currency=spec.currency,
        tokens=MappingProxyType(tokens),
        accelerators=MappingProxyType(accelerators),
        description=spec.description,
    )


class PriceBooks:
    """Several versions of the price book; ``at(when)`` is the one in effect then."""

    def __init__(self, books: Iterable[PriceBook]) -> None:
        ordered = sorted(books, key=lambda b: b.effective)
        for before, after in pairwise(ordered):
            if before.effective == after.effective:
                raise ValidationError(
                    f"price books {before.version!r} and {after.version!r} take effect at the "
                    f"same moment ({after.effective.isoformat()})",
                    "effective",
                )
        versions = [b.version for b in ordered]
        for i, version in enumerate(versions):
            if version in versions[:i]:
                raise ValidationError(f"price book version {version!r} is given twice", "version")
        self._books = tuple(ordered)
        self._starts = [b.effective for b in ordered]

    def at(self, when: datetime) -> PriceBook:
        """The book with the latest ``effective`` at or before ``when``."""
        i = bisect_right(self._starts, utc(when))
        if i == 0:
            first = self._starts[0].isoformat() if self._starts else "none loaded"
            moment = utc(when).isoformat()
            raise PriceNotFoundError(
                "price book at",
                moment,
                f"no price book is in effect at {moment} (the first takes effect: {first})",
            )
        return self._books[i - 1]

    def __iter__(self) -> Iterator[PriceBook]:
        return iter(self._books)

    def __len__(self) -> int:
        return len(self._books)


@functools.cache
def packaged_price_book_text() -> str:
    return resources.files("suanli.billing").joinpath("data/price-book.yaml").read_text("utf-8")


@functools.cache
def load_packaged_price_book() -> PriceBook:
    """The example price book shipped with suanli (not anyone's actual tariff)."""
    try:
        return parse_price_book(packaged_price_book_text(), "packaged price-book.yaml")
    except SuanliError as exc:  # a broken packaged file is a bug, not bad input
        raise CatalogError(exc.message) from None
