"""A tenant's funds: prepaid balance and vouchers, and whether a request may start.

The gateway asks ``can_afford`` (or ``require_funds``) *before* forwarding a request, with
the most the request can cost; the ledger's ``charge`` later posts what it did cost and
never refuses (delivered usage is a debt). A voucher pays only while ``at < expires_at``
and only for its ``products`` (None: any model).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from suanli.billing.prices import utc
from suanli.domain import money
from suanli.errors import ConflictError

__all__ = [
    "Funds",
    "InsufficientFundsError",
    "Voucher",
    "can_afford",
    "require_funds",
    "spendable",
]

_NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Voucher:
    """A voucher's state: usable while ``at < expires_at`` (None: never expires), for
    ``products`` (model ids; None: any model)."""

    voucher_id: str
    remaining_micros: int
    expires_at: datetime | None = None
    products: frozenset[str] | None = None

    def usable(self, model: str, at: datetime) -> bool:
        return (
            self.remaining_micros > 0
            and (self.expires_at is None or utc(at) < utc(self.expires_at))
            and (self.products is None or model in self.products)
        )


@dataclass(frozen=True, slots=True)
class Funds:
    """A tenant's money in one currency; ``prepaid_micros`` as the tenant sees it (it is
    negative when overdrawn)."""

    tenant_id: int
    currency: str
    prepaid_micros: int
    vouchers: tuple[Voucher, ...] = ()

    def usable_vouchers(self, model: str, at: datetime) -> list[Voucher]:
        """Vouchers that can pay for ``model`` at ``at``, earliest expiry first."""
        usable = [v for v in self.vouchers if v.usable(model, at)]
        return sorted(usable, key=_spending_order)


def _spending_order(v: Voucher) -> tuple[datetime, str]:
    return (utc(v.expires_at) if v.expires_at is not None else _NEVER, v.voucher_id)


def spendable(funds: Funds, model: str, at: datetime, credit_limit_micros: int = 0) -> int:
    """How much ``model`` may cost at ``at``: usable vouchers plus prepaid down to the limit."""
    prepaid = max(funds.prepaid_micros + credit_limit_micros, 0)
    return prepaid + sum(v.remaining_micros for v in funds.usable_vouchers(model, at))


def can_afford(
    funds: Funds, worst_case_micros: int, credit_limit_micros: int, model: str, at: datetime
) -> bool:
    """Whether a request whose cost is at most ``worst_case_micros`` may start."""
    return spendable(funds, model, at, credit_limit_micros) >= worst_case_micros


class InsufficientFundsError(ConflictError):
    code = "insufficient_funds"

    def __init__(self, tenant_id: int, shortfall_micros: int, currency: str) -> None:
        short = money.Money.from_micros(shortfall_micros, currency)
        super().__init__(f"tenant {tenant_id} is {short} short of what this request may cost")
        self.tenant_id = tenant_id
        self.shortfall_micros = shortfall_micros
        self.currency = currency


def require_funds(
    funds: Funds, worst_case_micros: int, credit_limit_micros: int, model: str, at: datetime
) -> None:
    """``can_afford``, raising ``InsufficientFundsError`` with the shortfall when not."""
    short = worst_case_micros - spendable(funds, model, at, credit_limit_micros)
    if short > 0:
        raise InsufficientFundsError(funds.tenant_id, short, funds.currency)
