"""A double-entry ledger, pure: accounts, postings, transactions and their checks.

Sign convention: a posting's ``amount_micros`` is positive for a debit and negative for a
credit; every transaction sums to zero in each currency. An account's raw balance is the
sum of its postings. Accounts (one currency each) and their normal side:

===========================  ===========  ===================================================
account                      normal side  meaning
===========================  ===========  ===================================================
tenant:{id}:prepaid          credit       what we owe a tenant who paid in advance
tenant:{id}:voucher:{vid}    credit       promotional credit a tenant may still spend
platform:revenue             credit       income from usage
platform:promotions          debit        what vouchers cost us (expired ones come back)
platform:cost_of_revenue     debit        what serving cost us
operator:{dc}:payable        credit       what we owe the operator of data center ``dc``
external:cash                debit        money received from outside
===========================  ===========  ===================================================

The balance as its holder sees it (``seen_balance``) is ``-raw`` for a credit-normal
account: a tenant who topped up 100 has a prepaid raw balance of -100 and sees 100.

Charging never refuses: usage already delivered is posted even when it overdraws prepaid
(it is then a debt). The gateway decides *before* a request whether the tenant can pay its
worst case (``funds.can_afford`` / ``funds.require_funds``); ``verify`` reports a prepaid
balance below its credit limit so that an overdraft is seen.

Idempotency: a transaction's ``external_id`` names the event it records (a payment
reference; ``usage:{request_id}`` for a request's charge). Posting the same id again with
the same ``fingerprint`` is a no-op; with different content it is an error
(``is_repeat``). Look up an existing id *before* building a charge again: a retry rebuilt
from funds that have changed since would post differently.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from suanli.billing.funds import Funds
from suanli.billing.prices import utc
from suanli.billing.rating import Charge
from suanli.domain import money, names
from suanli.errors import ConflictError, ValidationError

AccountKind = Literal[
    "prepaid", "voucher", "revenue", "promotions", "cost_of_revenue", "payable", "cash"
]
REVENUE = "platform:revenue"
PROMOTIONS = "platform:promotions"
COST_OF_REVENUE = "platform:cost_of_revenue"
CASH = "external:cash"
_FIXED: dict[str, AccountKind] = {
    REVENUE: "revenue",
    PROMOTIONS: "promotions",
    COST_OF_REVENUE: "cost_of_revenue",
    CASH: "cash",
}
_CREDIT_NORMAL: frozenset[AccountKind] = frozenset({"prepaid", "voucher", "revenue", "payable"})

TOP_UP, VOUCHER_GRANT, VOUCHER_EXPIRY, USAGE, COST = (
    "top_up", "voucher_grant", "voucher_expiry", "usage", "cost",
)  # fmt: skip
USAGE_PREFIX = "usage:"
MAX_EXTERNAL_ID = 128
MAX_AMOUNT = 2**63 - 1  # a BIGINT column
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_VOUCHER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# --- accounts ------------------------------------------------------------------------------


def _tenant(tenant_id: int) -> int:
    if isinstance(tenant_id, bool) or not isinstance(tenant_id, int) or tenant_id < 0:
        raise ValidationError(f"{tenant_id!r} is not a tenant id", "tenant_id")
    return tenant_id


def _voucher(voucher_id: str | int) -> str:
    text = str(voucher_id)
    if isinstance(voucher_id, bool) or not _VOUCHER_ID.match(text):
        raise ValidationError(
            f"{voucher_id!r} is not a voucher id (1-64 letters, digits, '.', '_', '-')",
            "voucher_id",
        )
    return text


def prepaid_account(tenant_id: int) -> str:
    return f"tenant:{_tenant(tenant_id)}:prepaid"


def voucher_account(tenant_id: int, voucher_id: str | int) -> str:
    return f"tenant:{_tenant(tenant_id)}:voucher:{_voucher(voucher_id)}"


def payable_account(data_center: str) -> str:
    return f"operator:{names.parse_name(data_center, 'data_center')}:payable"


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    kind: AccountKind
    tenant_id: int | None = None
    voucher_id: str | None = None
    data_center: str | None = None

    @property
    def credit_normal(self) -> bool:
        return self.kind in _CREDIT_NORMAL


def parse_account(name: str) -> Account:
    """The parts of an account name; ``ValidationError`` for anything not in the table."""
    if name in _FIXED:
        return Account(name, _FIXED[name])
    parts = name.split(":") if isinstance(name, str) else []
    try:
        if len(parts) == 3 and parts[0] == "tenant" and parts[2] == "prepaid":
            tenant = int(parts[1]) if parts[1].isdigit() else -1
            if prepaid_account(tenant) == name:
                return Account(name, "prepaid", tenant_id=tenant)
        if len(parts) == 4 and parts[0] == "tenant" and parts[2] == "voucher":
            tenant = int(parts[1]) if parts[1].isdigit() else -1
            if voucher_account(tenant, parts[3]) == name:
                return Account(name, "voucher", tenant_id=tenant, voucher_id=parts[3])
        if len(parts) == 3 and parts[0] == "operator" and parts[2] == "payable":
            return Account(name, "payable", data_center=names.parse_name(parts[1]))
    except ValidationError:
        pass
    raise ValidationError(f"{name!r} is not a ledger account", "account")


def seen_balance(account: str, raw_micros: int) -> int:
    """The balance as the account's holder sees it: ``-raw`` for credit-normal accounts."""
    return -raw_micros if parse_account(account).credit_normal else raw_micros


# --- postings and transactions -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Posting:
    """``amount_micros`` > 0 debits ``account``, < 0 credits it."""

    account: str
    amount_micros: int
    currency: str


@dataclass(frozen=True, slots=True)
class Transaction:
    external_id: str
    kind: str
    postings: tuple[Posting, ...]
    at: datetime
    memo: str = ""

    def problems(self) -> list[str]:
        """Everything wrong with this transaction on its own (empty when valid)."""
        out: list[str] = []
        if (
            not isinstance(self.external_id, str)
            or not 0 < len(self.external_id) <= MAX_EXTERNAL_ID
        ):
            out.append(f"external id must be 1-{MAX_EXTERNAL_ID} characters")
        if not isinstance(self.kind, str) or not _KIND.match(self.kind):
            out.append(f"kind {self.kind!r} is not a word of lower-case letters and '_'")
        elif self.kind == USAGE and usage_request_id(self.external_id) is None:
            out.append(f"a usage charge's external id starts with {USAGE_PREFIX!r}")
        elif self.kind != USAGE and usage_request_id(self.external_id) is not None:
            out.append(f"external ids starting {USAGE_PREFIX!r} are for usage charges")
        if not isinstance(self.at, datetime):
            out.append("at must be a datetime")
        if len(self.postings) < 2:
            out.append("a transaction has at least two postings")
        sums: Counter[str] = Counter()
        for p in self.postings:
            try:
                parse_account(p.account)
                if money.parse_currency(p.currency, "currency") != p.currency:
                    out.append(
                        f"posting to {p.account!r}: write currency {p.currency!r} in capitals"
                    )
            except ValidationError as exc:
                out.append(f"posting to {p.account!r}: {exc.message}")
            amount = p.amount_micros
            if isinstance(amount, bool) or not isinstance(amount, int):
                out.append(f"posting to {p.account!r}: amount is not a whole number of micros")
                continue
            if amount == 0 or abs(amount) > MAX_AMOUNT:
                out.append(f"posting to {p.account!r}: amount {amount} is zero or too large")
            sums[p.currency] += amount
        out += [f"{cur} postings sum to {total}, not 0" for cur, total in sums.items() if total]
        return out

    def validate(self) -> Transaction:
        """``self`` when valid, else ``ValidationError`` listing every problem."""
        found = self.problems()
        if found:
            raise ValidationError(f"transaction {self.external_id!r}: " + "; ".join(found))
        return self

    def fingerprint(self) -> str:
        """A stable hash of the content (kind, time, postings in any order; not the memo)."""
        content = {
            "kind": self.kind,
            "at": utc(self.at).isoformat(),
            "postings": sorted([p.account, p.currency, p.amount_micros] for p in self.postings),
        }
        blob = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class TransactionConflictError(ConflictError):
    code = "transaction_conflict"


def is_repeat(existing: Transaction, new: Transaction) -> bool:
    """True when ``new`` repeats ``existing`` (a no-op); ``TransactionConflictError`` when it
    reuses its external id with different content; False for another id."""
    if existing.external_id != new.external_id:
        return False
    if existing.fingerprint() != new.fingerprint():
        raise TransactionConflictError(
            f"transaction {new.external_id!r} was already recorded with different content"
        )
    return True


def usage_external_id(request_id: str) -> str:
    return USAGE_PREFIX + request_id


def usage_request_id(external_id: str) -> str | None:
    """The request id of a usage charge's external id, else None."""
    if isinstance(external_id, str) and external_id.startswith(USAGE_PREFIX):
        return external_id[len(USAGE_PREFIX) :] or None
    return None


def _amount(value: int, what: str = "amount_micros") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_AMOUNT:
        raise ValidationError(f"{what} must be a positive whole number of micro-units", what)
    return value


def _pair(
    kind: str, debit: str, credit: str, amount: int, currency: str, external_id: str, at: datetime
) -> Transaction:
    cur = money.parse_currency(currency, "currency")
    n = _amount(amount)
    return Transaction(
        external_id, kind, (Posting(debit, n, cur), Posting(credit, -n, cur)), at
    ).validate()


def top_up(
    tenant_id: int, amount_micros: int, currency: str, external_id: str, at: datetime
) -> Transaction:
    """Money paid in: debit cash, credit the tenant's prepaid balance."""
    return _pair(TOP_UP, CASH, prepaid_account(tenant_id), amount_micros, currency, external_id, at)


def grant_voucher(
    tenant_id: int,
    voucher_id: str | int,
    amount_micros: int,
    currency: str,
    external_id: str,
    at: datetime,
) -> Transaction:
    """A voucher given away: debit promotions, credit the voucher."""
    account = voucher_account(tenant_id, voucher_id)
    return _pair(VOUCHER_GRANT, PROMOTIONS, account, amount_micros, currency, external_id, at)


def expire_voucher(
    tenant_id: int,
    voucher_id: str | int,
    remaining_micros: int,
    currency: str,
    external_id: str,
    at: datetime,
) -> Transaction | None:
    """What is left of a voucher goes back to promotions; None when nothing is left."""
    if remaining_micros == 0:
        return None
    account = voucher_account(tenant_id, voucher_id)
    return _pair(VOUCHER_EXPIRY, account, PROMOTIONS, remaining_micros, currency, external_id, at)


def cost(
    data_center: str, amount_micros: int, currency: str, external_id: str, at: datetime
) -> Transaction:
    """What an operator charges us: debit cost of revenue, credit what we owe the operator."""
    payable = payable_account(data_center)
    return _pair(COST, COST_OF_REVENUE, payable, amount_micros, currency, external_id, at)


# --- charging a request ------------------------------------------------------------------


def charge(
    usage: Charge, funds: Funds, at: datetime, prefer_vouchers: bool = True
) -> Transaction | None:
    """Post a request's charge: debit its sources, credit revenue. None for a free request.

    With ``prefer_vouchers`` the usable vouchers pay first (earliest expiry first), then
    prepaid; otherwise prepaid pays first while it is positive, then vouchers. Whatever is
    left is debited to prepaid even if that overdraws it: delivered usage is a debt.
    ``at`` decides which vouchers are live; pass the usage record's time, not the clock,
    so that the transaction is the same however often it is built."""
    if usage.tenant_id != funds.tenant_id or usage.currency != funds.currency:
        raise ValidationError(
            f"charge {usage.request_id!r} is for tenant {usage.tenant_id} in {usage.currency}; "
            f"the funds are tenant {funds.tenant_id}'s in {funds.currency}"
        )
    if usage.amount_micros == 0:
        return None
    due = _amount(usage.amount_micros)
    taken: dict[str, int] = {}
    prepaid = prepaid_account(funds.tenant_id)

    def take(account: str, available: int) -> None:
        nonlocal due
        part = min(due, max(available, 0))
        if part:
            taken[account] = taken.get(account, 0) + part
            due -= part

    if not prefer_vouchers:
        take(prepaid, funds.prepaid_micros)
    for v in funds.usable_vouchers(usage.model, at):
        take(voucher_account(funds.tenant_id, v.voucher_id), v.remaining_micros)
    take(prepaid, due)
    cur = usage.currency
    postings = [Posting(account, amount, cur) for account, amount in taken.items()]
    postings.append(Posting(REVENUE, -usage.amount_micros, cur))
    memo = f"{usage.model} request {usage.request_id}"
    tx = Transaction(usage_external_id(usage.request_id), USAGE, tuple(postings), at, memo)
    return tx.validate()


# --- checking a ledger ---------------------------------------------------------------------


def balances(transactions: Iterable[Transaction]) -> dict[str, int]:
    """Raw balance (sum of postings, debit positive) of every account touched."""
    out: defaultdict[str, int] = defaultdict(int)
    for tx in transactions:
        for p in tx.postings:
            out[p.account] += p.amount_micros
    return dict(out)


def verify(
    transactions: Iterable[Transaction],
    stored_balances: Mapping[str, int] | None = None,
    limits: Mapping[str, int] | None = None,
) -> list[str]:
    """Every problem of a stored ledger, as sentences (empty: consistent).

    Checks: each transaction on its own (balanced per currency, postings, ids); one
    transaction per external id; one charge per usage request; one currency per account;
    ``stored_balances`` (raw, debit positive; None: not checked) equal to the sums of the
    postings; no voucher below zero; no prepaid balance below ``-limits[account]`` (a
    tenant's credit limit in micro-units, 0 when not given)."""
    txs = list(transactions)
    out: list[str] = []
    by_id: defaultdict[str, list[Transaction]] = defaultdict(list)
    by_request: Counter[str] = Counter()
    currencies: defaultdict[str, set[str]] = defaultdict(set)
    for tx in txs:
        out += [f"transaction {tx.external_id!r}: {p}" for p in tx.problems()]
        by_id[tx.external_id].append(tx)
        request = usage_request_id(tx.external_id)
        if tx.kind == USAGE and request is not None:
            by_request[request] += 1
        for p in tx.postings:
            currencies[p.account].add(p.currency)
    for ext, group in by_id.items():
        if len({t.fingerprint() for t in group}) > 1:
            out.append(f"external id {ext!r} is used by {len(group)} different transactions")
        elif len(group) > 1:
            out.append(f"transaction {ext!r} is recorded {len(group)} times")
    out += [f"request {r!r} is charged {n} times" for r, n in by_request.items() if n > 1]
    out += [
        f"account {a!r} holds several currencies: {', '.join(sorted(c))}"
        for a, c in currencies.items()
        if len(c) > 1
    ]
    sums = balances(txs)
    if stored_balances is not None:
        for account in sorted(set(sums) | set(stored_balances)):
            stored, actual = stored_balances.get(account, 0), sums.get(account, 0)
            if stored != actual:
                out.append(
                    f"account {account!r}: stored balance {stored} but its postings sum to "
                    f"{actual} (micro-units, debit positive)"
                )
    limits = limits or {}
    for account, raw in sorted(sums.items()):
        kind = _kind_or_none(account)
        if kind == "voucher" and -raw < 0:
            out.append(f"voucher {account!r} is overspent by {raw} micro-units")
        elif kind == "prepaid" and -raw < -limits.get(account, 0):
            out.append(
                f"prepaid {account!r} is at {-raw} micro-units, below its credit limit of "
                f"{limits.get(account, 0)}"
            )
    return out


def _kind_or_none(account: str) -> AccountKind | None:
    try:
        return parse_account(account).kind
    except ValidationError:
        return None
