"""Rating: usage turned into money, exactly.

The rules of a request's charge (``rate_usage``):

1. Cached tokens are part of the prompt: ``uncached = prompt - cached``; a record with more
   cached than prompt tokens is refused (``ValidationError``), never silently clipped.
2. Each part is ``tokens x price per million / 1,000,000`` micro-units, as an exact
   ``Fraction``: uncached prompt tokens at the ``input`` price, cached tokens at the
   ``cached`` price (never dropped, never free unless the book says so), completion tokens
   at the ``output`` price.
3. The three parts are rounded **once, together**: the amount is the exact total rounded
   half-to-even to a whole micro-unit. The parts are then allocated by largest remainder
   (ties: input, cached, output), so they always sum to the amount exactly and each is
   less than one micro-unit from its exact value.
4. A request that failed before producing anything (HTTP status >= 400 and no completion
   tokens) costs nothing. Anything else is charged for the usage it recorded: an
   interrupted stream pays for what it produced, and a streamed request costs exactly
   what the same usage costs without streaming (a usage line has no stream flag, so
   rating cannot treat them differently).

Accelerator time is prorated per second of the hourly price and rounded half-to-even once
(``rate_accelerator_time`` for what a tenant pays, ``operator_cost`` for what a data
center's operator charges us).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from suanli.billing.prices import PriceBook
from suanli.errors import ValidationError

__all__ = [
    "MICROS_PER_UNIT",
    "SECONDS_PER_HOUR",
    "TOKENS_PER_PRICE",
    "Charge",
    "UsageLine",
    "allocate",
    "exact_usage_cost",
    "operator_cost",
    "rate_accelerator_time",
    "rate_usage",
    "round_half_even",
]

MICROS_PER_UNIT = 1_000_000
TOKENS_PER_PRICE = 1_000_000  # token prices are per million tokens
SECONDS_PER_HOUR = 3600


def round_half_even(value: Fraction) -> int:
    """The integer nearest to ``value``; an exact half goes to the even neighbour."""
    floor, rest = divmod(value.numerator, value.denominator)
    twice = 2 * rest
    if twice > value.denominator or (twice == value.denominator and floor % 2 == 1):
        return floor + 1
    return floor


def allocate(total: int, parts: tuple[Fraction, ...]) -> tuple[int, ...]:
    """Whole numbers summing to ``total``, each within one of its exact part.

    Largest remainder: every part gets its floor, and the units left over go to the parts
    with the largest fractional remainders (ties: the earlier part). ``total`` must be the
    rounded sum of non-negative ``parts``.
    """
    floors = [p.numerator // p.denominator for p in parts]
    left = total - sum(floors)
    if not 0 <= left <= len(parts):
        raise ValueError(f"{total} is not the rounded sum of {parts}")
    order = sorted(range(len(parts)), key=lambda i: (-(parts[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return tuple(floors)


@dataclass(frozen=True, slots=True)
class UsageLine:
    """The fields of one gateway usage record that rating needs."""

    request_id: str
    tenant_id: int
    credential_id: int
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    status: int  # HTTP status sent to the client
    outcome: str  # ok | error | interrupted
    started_at: datetime

    @property
    def billable(self) -> bool:
        """False for a request that failed before producing anything."""
        return not (self.status >= 400 and self.completion_tokens == 0)


@dataclass(frozen=True, slots=True)
class Charge:
    """What one request costs, in micro-units of ``currency``.

    ``input_micros + cached_micros + output_micros == amount_micros`` always;
    ``input_micros`` covers the uncached prompt tokens only."""

    request_id: str
    tenant_id: int
    model: str
    amount_micros: int
    input_micros: int
    cached_micros: int
    output_micros: int
    currency: str
    price_version: str = ""


def _check(line: UsageLine) -> None:
    for name in ("prompt_tokens", "completion_tokens", "cached_tokens"):
        value = getattr(line, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValidationError(f"{name} must be a whole number at least 0", name)
    if line.cached_tokens > line.prompt_tokens:
        raise ValidationError(
            f"request {line.request_id!r}: {line.cached_tokens} cached tokens but only "
            f"{line.prompt_tokens} prompt tokens (cached tokens are part of the prompt)",
            "cached_tokens",
        )


def _parts(line: UsageLine, book: PriceBook) -> tuple[Fraction, Fraction, Fraction]:
    """Exact micro-units of (uncached input, cached input, output)."""
    price = book.token_price(line.model)
    uncached = line.prompt_tokens - line.cached_tokens
    return (
        Fraction(uncached * price.input_per_m, TOKENS_PER_PRICE),
        Fraction(line.cached_tokens * price.cached_per_m, TOKENS_PER_PRICE),
        Fraction(line.completion_tokens * price.output_per_m, TOKENS_PER_PRICE),
    )


def exact_usage_cost(line: UsageLine, book: PriceBook) -> Fraction:
    """The unrounded cost of ``line`` in micro-units (0 when it is not billable)."""
    _check(line)
    return sum(_parts(line, book), Fraction(0)) if line.billable else Fraction(0)


def _integer_charge(line: UsageLine, book: PriceBook) -> tuple[int, int, int, int]:
    """(amount, input, cached, output) by integer arithmetic: every part is a numerator over
    ``TOKENS_PER_PRICE``, so the same rounding and largest-remainder split as ``allocate``
    over Fractions, at a fraction of the cost (rating is the billing hot path)."""
    price = book.token_price(line.model)
    nums = (
        (line.prompt_tokens - line.cached_tokens) * price.input_per_m,
        line.cached_tokens * price.cached_per_m,
        line.completion_tokens * price.output_per_m,
    )
    floor, rest = divmod(sum(nums), TOKENS_PER_PRICE)
    twice = 2 * rest
    amount = floor + (twice > TOKENS_PER_PRICE or (twice == TOKENS_PER_PRICE and floor % 2 == 1))
    floors = [n // TOKENS_PER_PRICE for n in nums]
    left = amount - sum(floors)
    if left:
        order = sorted(range(3), key=lambda i: (-(nums[i] % TOKENS_PER_PRICE), i))
        for i in order[:left]:
            floors[i] += 1
    return amount, floors[0], floors[1], floors[2]


def rate_usage(line: UsageLine, book: PriceBook) -> Charge:
    """The charge for one usage record under ``book`` (see the module's rules)."""
    _check(line)
    if line.billable:
        amount, input_, cached, output = _integer_charge(line, book)
    else:
        amount = input_ = cached = output = 0
    return Charge(
        request_id=line.request_id,
        tenant_id=line.tenant_id,
        model=line.model,
        amount_micros=amount,
        input_micros=input_,
        cached_micros=cached,
        output_micros=output,
        currency=book.currency,
        price_version=book.version,
    )


def _seconds(value: Fraction | int) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, Fraction | int):
        raise ValidationError(
            "accelerator time is a whole number or a Fraction of seconds (floats are inexact)",
            "seconds",
        )
    if value < 0:
        raise ValidationError("accelerator time must not be negative", "seconds")
    return Fraction(value)


def operator_cost(per_hour_micros: int, accelerator_seconds: Fraction | int) -> int:
    """An operator's hourly price prorated per second, rounded half-to-even once."""
    if isinstance(per_hour_micros, bool) or not isinstance(per_hour_micros, int):
        raise ValidationError("an hourly price is a whole number of micro-units", "per_hour")
    if per_hour_micros < 0:
        raise ValidationError("an hourly price must not be negative", "per_hour")
    return round_half_even(per_hour_micros * _seconds(accelerator_seconds) / SECONDS_PER_HOUR)


def rate_accelerator_time(
    chip: str, seconds: Fraction | int, book: PriceBook, spot: bool = False
) -> int:
    """What ``seconds`` of one ``chip`` cost a tenant under ``book`` (spot: discounted)."""
    hourly = book.accelerator_price(chip).hourly(spot)
    return round_half_even(hourly * _seconds(seconds) / SECONDS_PER_HOUR)
