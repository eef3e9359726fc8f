"""Billing over the database: price books, top-ups, vouchers, rating usage into the ledger.

The money rules are pure (``suanli.billing``); this module stores what they decide through
``ledger_store`` (transactions, postings and running balances written in batches in one
database transaction, so a crash leaves either the whole batch or none of it; a repeated
external id with the same content is a no-op). Usage records are rated once: the charge's
external id is ``usage:{request_id}`` and the record is marked ``rated_at`` in the same
transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from suanli.billing import ledger
from suanli.billing.funds import Funds, Voucher
from suanli.billing.ledger import Posting, Transaction
from suanli.billing.prices import PriceBooks, load_packaged_price_book, parse_price_book
from suanli.billing.rating import UsageLine, rate_usage
from suanli.domain import money
from suanli.domain.actor import Actor
from suanli.errors import ConflictError, SuanliError, ValidationError
from suanli.services import audit, ledger_store, tenants
from suanli.services.ledger_store import post
from suanli.store.tables import (
    LedgerBalanceRow,
    LedgerPostingRow,
    LedgerTransactionRow,
    PriceBookRow,
    TenantRow,
    UsageRow,
    VoucherRow,
)
from suanli.store.types import utcnow

log = logging.getLogger(__name__)


# --- price books -------------------------------------------------------------------------


def price_books(session: Session) -> PriceBooks:
    """Every uploaded price book; the packaged example when none was uploaded."""
    rows = session.scalars(select(PriceBookRow).order_by(PriceBookRow.effective_at))
    books = [parse_price_book(r.document, f"price book {r.version}") for r in rows]
    return PriceBooks(books or [load_packaged_price_book()])


def upload_price_book(session: Session, actor: Actor, text: str) -> PriceBookRow:
    book = parse_price_book(text, "uploaded price book")
    exists = select(PriceBookRow.id).where(PriceBookRow.version == str(book.version))
    if session.scalar(exists) is not None:
        raise ConflictError(f"price book version {book.version!r} exists; give a new version")
    row = PriceBookRow(
        version=str(book.version),
        effective_at=book.effective,
        currency=book.currency,
        document=text,
    )
    session.add(row)
    session.flush()
    after = {"version": row.version, "effective": row.effective_at.isoformat()}
    audit.record(session, actor, "upload", "price_book", row.version, after=after)
    return row


# --- posting -----------------------------------------------------------------------------


# --- top-ups, vouchers, funds ------------------------------------------------------------


def _currency(session: Session, currency: str, field: str) -> str:
    cur = money.parse_currency(currency, field)
    billing = price_books(session).at(datetime.now(UTC)).currency
    if cur != billing:
        raise ValidationError(f"this platform bills in {billing}, not {cur}", field)
    return cur


def top_up(
    session: Session,
    actor: Actor,
    tenant: str,
    amount: Decimal,
    currency: str,
    external_id: str,
) -> Transaction:
    """Money received from a tenant (the payment's reference is the external id)."""
    trow = tenants.get(session, tenant)
    cur = _currency(session, currency, "currency")
    micros = money.Money(money.parse_amount(amount, "amount"), cur).micros
    ext = f"topup:{external_id}"
    # the same payment reported again keeps the time it was first recorded at, so that it
    # repeats that transaction (a no-op) instead of conflicting with it
    first_at = session.scalar(
        select(LedgerTransactionRow.at).where(LedgerTransactionRow.external_id == ext)
    )
    tx = ledger.top_up(trow.id, micros, cur, ext, first_at or utcnow())
    if post(session, [tx], [{"tenant": trow.name}]):
        audit.record(
            session, actor, "top_up", "tenant", trow.name,
            after={"amount": f"{amount}", "currency": cur, "external_id": external_id},
        )  # fmt: skip
    return tx


def grant_voucher(
    session: Session,
    actor: Actor,
    tenant: str,
    amount: Decimal,
    currency: str,
    expires_at: datetime,
    products: list[str] | None = None,
    memo: str = "",
) -> VoucherRow:
    trow = tenants.get(session, tenant)
    cur = _currency(session, currency, "currency")
    micros = money.Money(money.parse_amount(amount, "amount"), cur).micros
    if micros <= 0:
        raise ValidationError("a voucher must be worth more than 0", "amount")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at <= utcnow():
        raise ValidationError("the voucher would be expired already", "expires_at")
    row = VoucherRow(
        tenant_id=trow.id,
        amount_micros=micros,
        currency=cur,
        products=products,
        expires_at=expires_at,
        memo=memo,
    )
    session.add(row)
    session.flush()
    tx = ledger.grant_voucher(trow.id, row.id, micros, cur, f"voucher:{row.id}", row.granted_at)
    post(session, [tx], [{"tenant": trow.name}])
    audit.record(
        session, actor, "grant_voucher", "tenant", trow.name,
        after={"voucher": row.id, "amount": f"{amount}", "currency": cur,
               "expires_at": expires_at.isoformat(), "products": products},
    )  # fmt: skip
    return row


def raw_balances(session: Session, accounts: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in ledger_store.chunks(sorted(set(accounts))):
        stmt = select(LedgerBalanceRow.account, LedgerBalanceRow.balance_micros).where(
            LedgerBalanceRow.account.in_(chunk)
        )
        out.update((account, raw) for account, raw in session.execute(stmt))
    return out


def funds_of(session: Session, tenant_ids: Iterable[int], currency: str) -> dict[int, Funds]:
    """Prepaid balance and live vouchers of each tenant, as the ledger says now."""
    ids = sorted(set(tenant_ids))
    vouchers: dict[int, list[VoucherRow]] = defaultdict(list)
    for chunk in ledger_store.chunks(ids):
        for v in session.scalars(select(VoucherRow).where(VoucherRow.tenant_id.in_(chunk))):
            vouchers[v.tenant_id].append(v)
    accounts = [ledger.prepaid_account(t) for t in ids]
    accounts += [ledger.voucher_account(v.tenant_id, v.id) for vs in vouchers.values() for v in vs]
    raw = raw_balances(session, accounts)
    out = {}
    for t in ids:
        prepaid = -raw.get(ledger.prepaid_account(t), 0)
        live = tuple(
            Voucher(
                str(v.id),
                -raw.get(ledger.voucher_account(t, v.id), 0),
                v.expires_at,
                frozenset(v.products) if v.products is not None else None,
            )
            for v in vouchers.get(t, [])
            if v.currency == currency
        )
        out[t] = Funds(t, currency, prepaid, live)
    return out


# --- rating ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rated:
    """Records taken (quarantined ones included), charges posted, their sum, and the
    records set aside because they could not be rated."""

    records: int
    charged: int
    amount_micros: int
    quarantined: int = 0


# what rating reads of a usage record
_RATED_COLUMNS = (
    UsageRow.id,
    UsageRow.request_id,
    UsageRow.tenant_id,
    UsageRow.credential_id,
    UsageRow.model,
    UsageRow.catalog_model,
    UsageRow.node,
    UsageRow.chip,
    UsageRow.deployment_id,
    UsageRow.prompt_tokens,
    UsageRow.completion_tokens,
    UsageRow.cached_tokens,
    UsageRow.status,
    UsageRow.outcome,
    UsageRow.started_at,
)


def _line(row: UsageRow | Row[*tuple[Any, ...]]) -> UsageLine:
    return UsageLine(
        request_id=row.request_id,
        tenant_id=row.tenant_id,
        credential_id=row.credential_id,
        model=row.catalog_model or row.model,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cached_tokens=row.cached_tokens,
        status=row.status,
        outcome=row.outcome,
        started_at=row.started_at,
    )


def rate_pending(session: Session, limit: int = 5000, books: PriceBooks | None = None) -> Rated:
    """Rate up to ``limit`` unrated usage records into the ledger (the caller commits).

    On PostgreSQL the records are claimed with ``FOR UPDATE SKIP LOCKED``, so several
    raters share the work, and each holds the tenants it charges (``FOR NO KEY UPDATE``,
    in id order) from reading their funds to its commit, so that two raters cannot both
    spend what a voucher has left. On SQLite the write lock serialises them: it is taken
    before anything is read. Either way a record is charged once: its charge's external
    id is unique."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # the driver begins a transaction at the first write, not at a read: without this
        # no-op write first, two raters would read the same records and the same funds
        session.execute(
            update(UsageRow)
            .where(UsageRow.id == -1)
            .values(rated_at=None)
            .execution_options(synchronize_session=False)
        )
    stmt = select(*_RATED_COLUMNS).where(
        UsageRow.rated_at.is_(None), UsageRow.rating_error.is_(None)
    )
    stmt = stmt.order_by(UsageRow.id)
    stmt = stmt.limit(limit)
    if dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = session.execute(stmt).all()  # plain rows: no ORM objects to build and track
    if not rows:
        return Rated(0, 0, 0)
    books = books or price_books(session)
    currency = books.at(datetime.now(UTC)).currency
    charges = []
    refused: list[tuple[int, str]] = []
    for row in rows:
        try:
            charge = rate_usage(_line(row), books.at(row.started_at))
        except (SuanliError, ValueError) as exc:
            refused.append((row.id, str(exc)[:300]))
            continue
        if charge.amount_micros and charge.currency != currency:
            reason = (
                f"priced in {charge.currency} by price book {charge.price_version}; "
                f"balances are kept in {currency}"
            )
            refused.append((row.id, reason))
        elif charge.amount_micros:
            charges.append((row, charge))
    charged_tenants = sorted({c.tenant_id for _, c in charges})
    if dialect == "postgresql":
        for chunk in ledger_store.chunks(charged_tenants):
            session.execute(
                select(TenantRow.id)
                .where(TenantRow.id.in_(chunk))
                .order_by(TenantRow.id)
                .with_for_update(key_share=True)
            )
    funds = funds_of(session, charged_tenants, currency)
    txs, dims, total = [], [], 0
    for row, charge in charges:
        try:
            tx = ledger.charge(charge, funds[charge.tenant_id], row.started_at)
        except (SuanliError, ValueError) as exc:
            refused.append((row.id, str(exc)[:300]))
            continue
        if tx is None:
            continue
        funds[charge.tenant_id] = _after(funds[charge.tenant_id], tx)
        txs.append(tx)
        dims.append(
            {
                "tenant_id": row.tenant_id,
                "key": row.credential_id,
                "model": row.catalog_model or row.model,
                "called": row.model,
                "node": row.node,
                "chip": row.chip,
                "deployment_id": row.deployment_id,
                "prompt_tokens": row.prompt_tokens,
                "cached_tokens": row.cached_tokens,
                "completion_tokens": row.completion_tokens,
                "input": charge.input_micros,
                "cached": charge.cached_micros,
                "output": charge.output_micros,
                "price_version": charge.price_version,
            }
        )
        total += charge.amount_micros
    ledger_store.post_validated(session, txs, dims)  # ledger.charge validated each one
    _quarantine(session, refused)
    refused_ids = {i for i, _ in refused}
    rows = [r for r in rows if r.id not in refused_ids]
    now = utcnow()
    if dialect == "postgresql":
        session.execute(
            text(
                "UPDATE usage_records SET rated_at = :now "
                "WHERE id = ANY(CAST(:ids AS INTEGER[])) AND rated_at IS NULL"
            ),
            {"now": now, "ids": [r.id for r in rows]},
        )
    else:
        for chunk in ledger_store.chunks([r.id for r in rows]):
            session.execute(
                update(UsageRow)
                .where(UsageRow.id.in_(chunk), UsageRow.rated_at.is_(None))
                .values(rated_at=now)
                .execution_options(synchronize_session=False)
            )
    return Rated(len(rows) + len(refused), len(txs), total, len(refused))


def _quarantine(session: Session, refused: list[tuple[int, str]]) -> None:
    """Set aside the records rating refused, with the reason (logged without secrets)."""
    for row_id, reason in refused:
        session.execute(
            update(UsageRow)
            .where(UsageRow.id == row_id)
            .values(rating_error=reason)
            .execution_options(synchronize_session=False)
        )
    if refused:
        log.warning("%d usage record(s) set aside, e.g.: %s", len(refused), refused[0][1])


def quarantined(session: Session, limit: int = 100) -> tuple[int, list[UsageRow]]:
    """How many usage records rating set aside, and the first ``limit`` of them."""
    where = UsageRow.rating_error.is_not(None)
    count = session.scalar(select(func.count()).select_from(UsageRow).where(where)) or 0
    rows = session.scalars(select(UsageRow).where(where).order_by(UsageRow.id).limit(limit))
    return count, list(rows)


def retry_quarantined(session: Session) -> int:
    """Put the set-aside records back in line for rating (after the prices were fixed)."""
    result = session.execute(
        update(UsageRow)
        .where(UsageRow.rating_error.is_not(None), UsageRow.rated_at.is_(None))
        .values(rating_error=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _after(funds: Funds, tx: Transaction) -> Funds:
    """``funds`` once ``tx`` is posted (so the next charge in a batch sees it)."""
    spent = {p.account: p.amount_micros for p in tx.postings if p.amount_micros > 0}
    prepaid = funds.prepaid_micros - spent.get(ledger.prepaid_account(funds.tenant_id), 0)
    vouchers = tuple(
        Voucher(
            v.voucher_id,
            v.remaining_micros
            - spent.get(ledger.voucher_account(funds.tenant_id, v.voucher_id), 0),
            v.expires_at,
            v.products,
        )
        for v in funds.vouchers
    )
    return Funds(funds.tenant_id, funds.currency, prepaid, vouchers)


# --- checking ----------------------------------------------------------------------------


def load_transactions(session: Session) -> Iterator[Transaction]:
    """Every stored transaction with its postings (in id order, streamed)."""
    postings: dict[int, list[Posting]] = defaultdict(list)
    for tid, account, amount, cur in session.execute(
        select(
            LedgerPostingRow.transaction_id,
            LedgerPostingRow.account,
            LedgerPostingRow.amount_micros,
            LedgerPostingRow.currency,
        )
    ):
        postings[tid].append(Posting(account, amount, cur))
    rows = session.execute(
        select(
            LedgerTransactionRow.id,
            LedgerTransactionRow.external_id,
            LedgerTransactionRow.kind,
            LedgerTransactionRow.at,
            LedgerTransactionRow.memo,
            LedgerTransactionRow.fingerprint,
        ).order_by(LedgerTransactionRow.id)
    )
    for tid, ext, kind, at, memo, fp in rows:
        tx = Transaction(ext, kind, tuple(postings.get(tid, [])), at, memo)
        if tx.fingerprint() != fp:
            tx = Transaction(ext, kind + "_altered", tx.postings, at, memo)  # shows as a problem
        yield tx


def verify(session: Session) -> list[str]:
    """The invariants of the stored ledger (see ``suanli.billing.ledger.verify``), plus:
    every usage record marked rated that should cost something has exactly one charge."""
    stored: dict[str, int] = dict(
        session.execute(select(LedgerBalanceRow.account, LedgerBalanceRow.balance_micros)).all()
    )
    limits = {}
    for tid, prepaid, limit in session.execute(
        select(TenantRow.id, TenantRow.prepaid, TenantRow.credit_limit_micros)
    ):
        # a postpaid tenant's prepaid account is what it owes: no floor
        limits[ledger.prepaid_account(tid)] = limit if prepaid else ledger.MAX_AMOUNT
    txs = list(load_transactions(session))
    problems = ledger.verify(txs, stored, limits)
    problems += [
        f"transaction {t.external_id!r}: its postings do not match its fingerprint"
        for t in txs
        if t.kind.endswith("_altered")
    ]
    charged = {ledger.usage_request_id(t.external_id) for t in txs if t.kind == ledger.USAGE}
    books = price_books(session)
    for row in session.scalars(select(UsageRow).where(UsageRow.rated_at.isnot(None))):
        due = rate_usage(_line(row), books.at(row.started_at)).amount_micros
        if due and row.request_id not in charged:
            problems.append(f"usage {row.request_id!r} is marked rated but has no charge")
    return problems
