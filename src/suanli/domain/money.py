"""Money: a Decimal amount with an ISO 4217 currency, never a float.

Stored as integer micro-units (1e-6 of the currency unit) so that every database holds it
exactly and per-second rating later keeps full precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from suanli.errors import ValidationError

MICROS = Decimal(1_000_000)
_CURRENCIES = frozenset(
    {"CNY", "USD", "EUR", "SGD", "HKD", "JPY", "GBP", "KRW", "AED", "SAR", "MYR", "IDR", "THB"}
)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    @property
    def micros(self) -> int:
        return int(self.amount * MICROS)

    @classmethod
    def from_micros(cls, micros: int, currency: str) -> Money:
        return cls((Decimal(micros) / MICROS).normalize(), currency)

    @property
    def text(self) -> str:
        """The amount as a plain decimal string, e.g. "12.5"."""
        return f"{self.amount:f}"

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency}"


def parse_amount(value: object, field: str) -> Decimal:
    """Accept a decimal string or an integer; refuse floats, negatives, sub-micro precision."""
    if isinstance(value, (bool, float)):
        raise ValidationError(
            'money must be a decimal string such as "12.50" (floats lose cents)', field
        )
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ValidationError(f"{value!r} is not a decimal amount", field) from None
    elif isinstance(value, Decimal):
        amount = value
    else:
        raise ValidationError("money must be a decimal string", field)
    if not amount.is_finite():
        raise ValidationError(f"{value!r} is not a finite amount", field)
    if amount < 0:
        raise ValidationError("amount must not be negative", field)
    if amount >= Decimal(10) ** 12:
        raise ValidationError("amount is too large (at most 999999999999.999999)", field)
    if amount != amount.quantize(Decimal("0.000001")):
        raise ValidationError("amount has more than 6 decimal places", field)
    return amount


def parse_currency(value: object, field: str) -> str:
    if not isinstance(value, str) or value.upper() not in _CURRENCIES:
        known = ", ".join(sorted(_CURRENCIES))
        raise ValidationError(f"unknown currency {value!r}; one of: {known}", field)
    return value.upper()


def parse_money(amount: object, currency: object, field: str) -> Money:
    return Money(
        parse_amount(amount, f"{field}.amount"), parse_currency(currency, f"{field}.currency")
    )
