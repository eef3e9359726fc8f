"""Billing over the database (SQLite and PostgreSQL): top-ups, vouchers, rating usage into the
ledger exactly once, idempotent posting, ``verify`` and what it catches.

The last section holds one test for each way popular LLM gateways are known to get bills
wrong: streamed requests priced at zero, cached tokens dropped, spend counted twice on
retries (and on a rater restarted after a crash). The fourth, budgets bypassed by a burst
of concurrent requests, is decided by the gateway before it forwards a request (it reserves
each request's worst case against the tenant's funds), not by rating: it is tested in
``tests/gateway/test_wallet.py`` (``test_a_burst_cannot_overdraw``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from suanli.billing import ledger
from suanli.billing.funds import Funds
from suanli.billing.ledger import Transaction, TransactionConflictError
from suanli.billing.prices import load_packaged_price_book, packaged_price_book_text
from suanli.billing.rating import rate_usage
from suanli.domain.actor import SYSTEM
from suanli.domain.specs import TenantSpec
from suanli.errors import ValidationError
from suanli.gateway.metering import insert_records
from suanli.services import billing, ledger_store, tenants
from suanli.store.tables import (
    LedgerBalanceRow,
    LedgerPostingRow,
    LedgerTransactionRow,
    TenantRow,
    UsageRow,
)
from tests.services.billing_writer import rate_all, usage_line, usage_record

CNY = "CNY"
BOOK = load_packaged_price_book()
BOOK_TEXT = packaged_price_book_text()
# deepseek-v3 in the packaged book: 2 input, 0.5 cached, 8 output per million tokens, so one
# token is 2 / 0.5 / 8 micro-units; the default usage record (1000 in, 500 out) costs 6000
PLAIN = 1000 * 2 + 500 * 8
NOW = datetime.now(UTC)


def new_tenant(
    factory: sessionmaker[Session], name: str, prepaid: bool = True, credit_limit: int = 0
) -> int:
    with factory() as session:
        row = tenants.create(session, SYSTEM, TenantSpec(name=name, country="CN"))
        row.prepaid = prepaid
        row.credit_limit_micros = credit_limit
        session.commit()
        return row.id


def top_up(factory: sessionmaker[Session], tenant: str, amount: str, ref: str) -> Transaction:
    with factory() as session:
        tx = billing.top_up(session, SYSTEM, tenant, Decimal(amount), CNY, ref)
        session.commit()
        return tx


def voucher(
    factory: sessionmaker[Session],
    tenant: str,
    amount: str,
    expires_at: datetime | None = None,
    products: list[str] | None = None,
) -> str:
    with factory() as session:
        row = billing.grant_voucher(
            session,
            SYSTEM,
            tenant,
            Decimal(amount),
            CNY,
            expires_at or NOW + timedelta(days=30),
            products,
        )
        session.commit()
        return ledger.voucher_account(row.tenant_id, row.id)


def funds(factory: sessionmaker[Session], tenant_id: int) -> Funds:
    with factory() as session:
        return billing.funds_of(session, [tenant_id], CNY)[tenant_id]


def balance(factory: sessionmaker[Session], account: str) -> int:
    """The balance as the account's holder sees it (micro-units)."""
    with factory() as session:
        raw = billing.raw_balances(session, [account]).get(account, 0)
    return ledger.seen_balance(account, raw)


def usage_charges(factory: sessionmaker[Session]) -> dict[str, Transaction]:
    """Each charged request id and its charge; fails if a request is charged twice."""
    out: dict[str, Transaction] = {}
    with factory() as session:
        for tx in billing.load_transactions(session):
            if tx.kind == ledger.USAGE:
                request = ledger.usage_request_id(tx.external_id)
                assert request is not None
                assert request not in out, f"{request} charged twice"
                out[request] = tx
    return out


def amount_of(tx: Transaction) -> int:
    """What a charge earned: minus its credit to revenue."""
    return -sum(p.amount_micros for p in tx.postings if p.account == ledger.REVENUE)


def paid_from(tx: Transaction) -> dict[str, int]:
    return {p.account: p.amount_micros for p in tx.postings if p.account != ledger.REVENUE}


def verify(factory: sessionmaker[Session]) -> list[str]:
    with factory() as session:
        return billing.verify(session)


def stored_records(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(UsageRow)) or 0


def ingest(engine: Engine, *records: dict[str, Any]) -> int:
    """Insert like the gateway's flusher does; how many records were new (counted, since
    ``insert_records``' own count is not reliable on every database)."""
    before = stored_records(engine)
    insert_records(engine, list(records))
    return stored_records(engine) - before


@pytest.fixture
def world(session_factory: sessionmaker[Session]) -> dict[str, int]:
    """Tenants ``acme`` (prepaid, 100 CNY) and ``bolt`` (postpaid)."""
    acme = new_tenant(session_factory, "acme")
    bolt = new_tenant(session_factory, "bolt", prepaid=False)
    top_up(session_factory, "acme", "100", "pay-1")
    return {"acme": acme, "bolt": bolt}


# --- top-ups and vouchers ------------------------------------------------------------------


def test_top_up_then_balance(session_factory: sessionmaker[Session]) -> None:
    t = new_tenant(session_factory, "acme")
    assert funds(session_factory, t) == Funds(t, CNY, 0, ())
    top_up(session_factory, "acme", "100", "pay-1")
    top_up(session_factory, "acme", "0.25", "pay-2")
    assert funds(session_factory, t).prepaid_micros == 100_250_000
    assert balance(session_factory, ledger.CASH) == 100_250_000
    # the same payment reported again changes nothing
    top_up(session_factory, "acme", "100", "pay-1")
    assert funds(session_factory, t).prepaid_micros == 100_250_000
    with pytest.raises(TransactionConflictError):
        top_up(session_factory, "acme", "99", "pay-1")
    assert funds(session_factory, t).prepaid_micros == 100_250_000
    assert verify(session_factory) == []


def test_voucher_is_granted_and_spent_before_cash(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    acme = world["acme"]
    account = voucher(session_factory, "acme", "0.01")  # 10,000 micro-units
    f = funds(session_factory, acme)
    assert [v.remaining_micros for v in f.vouchers] == [10_000]
    assert balance(session_factory, ledger.PROMOTIONS) == 10_000

    first = usage_record(tenant_id=acme, started_at=NOW)
    ingest(engine, first)
    rate_all(engine)
    assert paid_from(usage_charges(session_factory)[first["request_id"]]) == {account: PLAIN}
    assert balance(session_factory, account) == 10_000 - PLAIN
    assert funds(session_factory, acme).prepaid_micros == 100_000_000

    # the next one costs more than the voucher has left: the rest comes from prepaid
    second = usage_record(tenant_id=acme, started_at=NOW)
    ingest(engine, second)
    rate_all(engine)
    left = 10_000 - PLAIN
    assert paid_from(usage_charges(session_factory)[second["request_id"]]) == {
        account: left,
        ledger.prepaid_account(acme): PLAIN - left,
    }
    assert balance(session_factory, account) == 0
    assert funds(session_factory, acme).prepaid_micros == 100_000_000 - (PLAIN - left)
    assert balance(session_factory, ledger.REVENUE) == 2 * PLAIN
    assert verify(session_factory) == []


def test_product_limited_voucher_pays_only_for_its_models(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    acme = world["acme"]
    account = voucher(session_factory, "acme", "5", products=["deepseek-r1"])
    other = usage_record(tenant_id=acme, model="deepseek-v3", started_at=NOW)
    its = usage_record(tenant_id=acme, model="deepseek-r1", started_at=NOW)
    ingest(engine, other, its)
    rate_all(engine)
    charges = usage_charges(session_factory)
    assert paid_from(charges[other["request_id"]]) == {ledger.prepaid_account(acme): PLAIN}
    r1 = 1000 * 4 + 500 * 16
    assert paid_from(charges[its["request_id"]]) == {account: r1}
    assert balance(session_factory, account) == 5_000_000 - r1
    assert verify(session_factory) == []


def test_expired_voucher_is_not_spent(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    acme = world["acme"]
    expires = NOW + timedelta(hours=1)
    account = voucher(session_factory, "acme", "5", expires_at=expires)
    before = usage_record(tenant_id=acme, started_at=expires - timedelta(seconds=1))
    at = usage_record(tenant_id=acme, started_at=expires)  # usable while at < expires_at
    after = usage_record(tenant_id=acme, started_at=expires + timedelta(hours=1))
    ingest(engine, before, at, after)
    rate_all(engine)
    charges = usage_charges(session_factory)
    assert paid_from(charges[before["request_id"]]) == {account: PLAIN}
    prepaid = ledger.prepaid_account(acme)
    assert paid_from(charges[at["request_id"]]) == {prepaid: PLAIN}
    assert paid_from(charges[after["request_id"]]) == {prepaid: PLAIN}
    assert balance(session_factory, account) == 5_000_000 - PLAIN
    assert verify(session_factory) == []


def test_voucher_and_top_up_are_checked(session_factory: sessionmaker[Session]) -> None:
    new_tenant(session_factory, "acme")
    with pytest.raises(ValidationError):
        voucher(session_factory, "acme", "1", expires_at=NOW - timedelta(seconds=1))
    with pytest.raises(ValidationError):
        voucher(session_factory, "acme", "0")
    with pytest.raises(ValidationError):
        top_up(session_factory, "acme", "0.0000001", "pay-x")
    with session_factory() as session, pytest.raises(ValidationError):
        billing.top_up(session, SYSTEM, "acme", Decimal(1), "USD", "pay-usd")
    assert verify(session_factory) == []


# --- rating exactly once -------------------------------------------------------------------


def test_rate_pending_twice_charges_once(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    records = [usage_record(tenant_id=world["acme"], started_at=NOW) for _ in range(7)]
    ingest(engine, *records)
    with session_factory() as session:
        first = billing.rate_pending(session)
        session.commit()
    with session_factory() as session:
        again = billing.rate_pending(session)
        session.commit()
    assert first == billing.Rated(7, 7, 7 * PLAIN)
    assert again == billing.Rated(0, 0, 0)
    assert len(usage_charges(session_factory)) == 7
    assert balance(session_factory, ledger.REVENUE) == 7 * PLAIN
    assert verify(session_factory) == []


def test_rate_pending_works_through_the_backlog_in_batches(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    records = [usage_record(tenant_id=world["bolt"], started_at=NOW) for _ in range(25)]
    ingest(engine, *records)
    seen = []
    while True:
        with session_factory() as session:
            done = billing.rate_pending(session, limit=10)
            session.commit()
        if not done.records:
            break
        seen.append(done.records)
    assert seen == [10, 10, 5]
    assert len(usage_charges(session_factory)) == 25
    with session_factory() as session:
        assert session.scalar(select(func.count()).where(UsageRow.rated_at.is_(None))) == 0


def test_a_record_inserted_twice_is_charged_once(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    rec = usage_record(tenant_id=world["acme"], started_at=NOW)
    assert ingest(engine, rec) == 1
    assert ingest(engine, rec) == 0
    rate_all(engine)
    assert ingest(engine, rec) == 0  # replayed after rating: still nothing new
    rate_all(engine)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(UsageRow)) == 1
    assert list(usage_charges(session_factory)) == [rec["request_id"]]
    assert balance(session_factory, ledger.REVENUE) == PLAIN


def test_free_requests_are_marked_rated_without_a_charge(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    failed = usage_record(
        tenant_id=world["acme"], status=503, outcome="error", completion_tokens=0, started_at=NOW
    )
    empty = usage_record(
        tenant_id=world["acme"], prompt_tokens=0, completion_tokens=0, started_at=NOW
    )
    ingest(engine, failed, empty)
    with session_factory() as session:
        assert billing.rate_pending(session) == billing.Rated(2, 0, 0)
        session.commit()
        assert session.scalar(select(func.count()).where(UsageRow.rated_at.is_(None))) == 0
    assert usage_charges(session_factory) == {}
    assert verify(session_factory) == []


def test_a_record_that_cannot_be_rated_is_set_aside_and_blocks_nothing(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    ancient = usage_record(tenant_id=world["acme"], started_at=datetime(2001, 1, 1, tzinfo=UTC))
    fine = usage_record(tenant_id=world["acme"], started_at=NOW)
    ingest(engine, ancient, fine)
    with session_factory() as session:
        assert billing.rate_pending(session) == billing.Rated(2, 1, PLAIN, quarantined=1)
        session.commit()
        assert billing.rate_pending(session) == billing.Rated(0, 0, 0)  # not taken again
        count, rows = billing.quarantined(session)
        assert count == 1
        assert rows[0].request_id == ancient["request_id"]
        assert rows[0].rated_at is None
        assert "no price book is in effect" in (rows[0].rating_error or "")
    assert list(usage_charges(session_factory)) == [fine["request_id"]]
    assert verify(session_factory) == []
    # the operator uploads a book that covers 2001, then retries: charged once, set aside no more
    text_ = re.sub(r"(?m)^effective: .*$", "effective: 2000-01-01", BOOK_TEXT)
    with session_factory() as session:
        billing.upload_price_book(session, SYSTEM, text_.replace("version: ", "version: old-"))
        session.commit()
        assert billing.retry_quarantined(session) == 1
        assert billing.rate_pending(session) == billing.Rated(1, 1, PLAIN)
        session.commit()
        assert billing.quarantined(session)[0] == 0
    assert set(usage_charges(session_factory)) == {fine["request_id"], ancient["request_id"]}
    assert verify(session_factory) == []


def test_a_record_priced_in_another_currency_is_set_aside(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    """The book in effect when the request ran bills in USD, today's in CNY: the balances
    are in CNY, so that record waits for an operator; the others are charged."""
    old = re.sub(r"(?m)^effective: .*$", "effective: 2000-01-01", BOOK_TEXT)
    old = re.sub(r"(?m)^currency: .*$", "currency: USD", old).replace("version: ", "version: usd-")
    with session_factory() as session:
        billing.upload_price_book(session, SYSTEM, old)
        billing.upload_price_book(session, SYSTEM, BOOK_TEXT)
        session.commit()
    in_usd = usage_record(tenant_id=world["acme"], started_at=datetime(2001, 1, 1, tzinfo=UTC))
    fine = usage_record(tenant_id=world["acme"], started_at=NOW)
    ingest(engine, in_usd, fine)
    with session_factory() as session:
        assert billing.rate_pending(session) == billing.Rated(2, 1, PLAIN, quarantined=1)
        session.commit()
        _count, rows = billing.quarantined(session)
        assert [r.request_id for r in rows] == [in_usd["request_id"]]
        assert "priced in USD" in (rows[0].rating_error or "")
    assert list(usage_charges(session_factory)) == [fine["request_id"]]
    assert verify(session_factory) == []


# --- posting -------------------------------------------------------------------------------


def test_posting_the_same_transaction_twice_is_a_no_op(
    session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    acme = world["acme"]
    tx = ledger.top_up(acme, 5_000_000, CNY, "topup:bank-77", NOW)
    with session_factory() as session:
        assert ledger_store.post(session, [tx]) == 1
        session.commit()
    with session_factory() as session:
        assert ledger_store.post(session, [tx]) == 0
        assert ledger_store.post(session, [tx, tx]) == 0
        session.commit()
    # with another memo it is still the same transaction
    same = Transaction(tx.external_id, tx.kind, tx.postings[::-1], tx.at, "another memo")
    with session_factory() as session:
        assert ledger_store.post(session, [same]) == 0
        session.commit()
    assert funds(session_factory, acme).prepaid_micros == 105_000_000
    with session_factory() as session:
        stored = session.scalar(
            select(func.count()).where(LedgerTransactionRow.external_id == tx.external_id)
        )
        assert stored == 1
    assert verify(session_factory) == []


def test_same_external_id_with_other_content_is_a_conflict(
    session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    acme = world["acme"]
    tx = ledger.top_up(acme, 5_000_000, CNY, "topup:bank-77", NOW)
    other = ledger.top_up(acme, 5_000_001, CNY, "topup:bank-77", NOW)
    later = ledger.top_up(acme, 5_000_000, CNY, "topup:bank-77", NOW + timedelta(seconds=1))
    with session_factory() as session:
        ledger_store.post(session, [tx])
        session.commit()
    for changed in (other, later):
        with session_factory() as session:
            with pytest.raises(TransactionConflictError):
                ledger_store.post(session, [changed])
            session.rollback()
    # in one batch too, before anything is written
    fresh = ledger.top_up(acme, 1_000_000, CNY, "topup:bank-78", NOW)
    clash = ledger.top_up(acme, 2_000_000, CNY, "topup:bank-78", NOW)
    with session_factory() as session:
        with pytest.raises(TransactionConflictError):
            ledger_store.post(session, [fresh, clash])
        session.rollback()
    assert funds(session_factory, acme).prepaid_micros == 105_000_000
    assert verify(session_factory) == []


def test_posted_times_and_dims_read_back_and_compare_in_sql(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    """Reports select ledger rows by time in SQL: what the fast insert paths store must
    compare like what the ORM stores (same text form on SQLite)."""
    rec = usage_record(tenant_id=world["bolt"], started_at=NOW)
    ingest(engine, rec)
    rate_all(engine)
    at = datetime.fromtimestamp(rec["started_at"], UTC)
    with session_factory() as session:
        row = session.scalars(
            select(LedgerTransactionRow).where(LedgerTransactionRow.at == at)
        ).one()
        assert row.external_id == ledger.usage_external_id(rec["request_id"])
        assert row.dims is not None
        assert row.dims["tenant_id"] == world["bolt"]
        assert row.dims["model"] == "deepseek-v3"
        window = select(func.count()).where(
            LedgerTransactionRow.at >= at - timedelta(microseconds=1),
            LedgerTransactionRow.at < at + timedelta(microseconds=1),
            LedgerTransactionRow.created_at <= datetime.now(UTC),
        )
        assert session.scalar(window) == 1


def test_an_unbalanced_transaction_is_refused(
    session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    bad = Transaction(
        "topup:odd",
        ledger.TOP_UP,
        (
            ledger.Posting(ledger.CASH, 10, CNY),
            ledger.Posting(ledger.prepaid_account(world["acme"]), -9, CNY),
        ),
        NOW,
    )
    with session_factory() as session, pytest.raises(ValidationError):
        ledger_store.post(session, [bad])
    assert verify(session_factory) == []


# --- verify --------------------------------------------------------------------------------


def mixed_workload(engine: Engine, factory: sessionmaker[Session], world: dict[str, int]) -> None:
    acme, bolt = world["acme"], world["bolt"]
    voucher(factory, "acme", "0.05")
    voucher(factory, "acme", "1", products=["deepseek-r1"])
    voucher(factory, "bolt", "0.02", expires_at=NOW + timedelta(hours=1))
    top_up(factory, "acme", "3.5", "pay-2")
    records = []
    for i in range(60):
        records.append(
            usage_record(
                tenant_id=(acme, bolt)[i % 2],
                model=("deepseek-v3", "deepseek-r1", "qwen2.5-7b-instruct")[i % 3],
                prompt_tokens=100 + 37 * i,
                cached_tokens=(13 * i) % 100,
                completion_tokens=0 if i % 11 == 0 else 3 * i,
                status=500 if i % 11 == 0 else 200,
                outcome="error" if i % 11 == 0 else "ok",
                stream=i % 4 == 0,
                started_at=NOW + timedelta(minutes=2 * i),
            )
        )
    ingest(engine, *records[:30])
    rate_all(engine, limit=7)
    top_up(factory, "acme", "1", "pay-3")
    ingest(engine, *records[20:])  # an overlap: replayed lines
    rate_all(engine, limit=7)


def test_verify_is_clean_after_a_mixed_workload(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    mixed_workload(engine, session_factory, world)
    assert verify(session_factory) == []
    with session_factory() as session:
        stored = dict(
            session.execute(select(LedgerBalanceRow.account, LedgerBalanceRow.balance_micros)).all()
        )
        txs = list(billing.load_transactions(session))
    assert stored == ledger.balances(txs)
    assert sum(stored.values()) == 0


def test_verify_sees_a_balance_changed_behind_its_back(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    mixed_workload(engine, session_factory, world)
    account = ledger.prepaid_account(world["acme"])
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE ledger_balances SET balance_micros = balance_micros - 1000000 "
                "WHERE account = :a"
            ),
            {"a": account},
        )
    problems = verify(session_factory)
    assert any(account in p and "stored balance" in p for p in problems), problems


def test_verify_sees_a_deleted_posting(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    mixed_workload(engine, session_factory, world)
    with session_factory() as session:
        posting = session.scalars(
            select(LedgerPostingRow)
            .join(LedgerTransactionRow)
            .where(LedgerTransactionRow.kind == ledger.USAGE)
            .order_by(LedgerPostingRow.id)
        ).first()
        assert posting is not None
        tx_id, account = posting.transaction_id, posting.account
        external = session.scalar(
            select(LedgerTransactionRow.external_id).where(LedgerTransactionRow.id == tx_id)
        )
        session.execute(delete(LedgerPostingRow).where(LedgerPostingRow.id == posting.id))
        session.commit()
    problems = verify(session_factory)
    text_ = "\n".join(problems)
    assert f"transaction {external!r}: CNY postings sum to" in text_, problems  # unbalanced
    assert "do not match its fingerprint" in text_, problems
    assert f"account {account!r}: stored balance" in text_, problems


def test_verify_sees_a_record_marked_rated_without_a_charge(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    mixed_workload(engine, session_factory, world)
    sneaky = usage_record(tenant_id=world["acme"], started_at=NOW)
    free = usage_record(
        tenant_id=world["acme"], status=429, outcome="error", completion_tokens=0, started_at=NOW
    )
    ingest(engine, sneaky, free)
    with session_factory() as session:
        session.execute(
            update(UsageRow)
            .where(UsageRow.request_id.in_([sneaky["request_id"], free["request_id"]]))
            .values(rated_at=NOW)
        )
        session.commit()
    problems = verify(session_factory)
    assert problems == [f"usage {sneaky['request_id']!r} is marked rated but has no charge"]


def test_verify_sees_a_voucher_overspent_and_an_overdraft(
    session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    acme = world["acme"]
    account = voucher(session_factory, "acme", "0.01")
    spend = Transaction(
        "usage:forged",
        ledger.USAGE,
        (
            ledger.Posting(account, 20_000, CNY),
            ledger.Posting(ledger.prepaid_account(acme), 200_000_000, CNY),
            ledger.Posting(ledger.REVENUE, -200_020_000, CNY),
        ),
        NOW,
    )
    with session_factory() as session:
        ledger_store.post(session, [spend])
        session.commit()
    problems = verify(session_factory)
    assert any("overspent" in p for p in problems), problems
    assert any("below its credit limit" in p for p in problems), problems
    # a credit limit makes the same overdraft allowed
    with session_factory() as session:
        session.execute(
            update(TenantRow).where(TenantRow.id == acme).values(credit_limit_micros=100_000_000)
        )
        session.commit()
    assert not any("credit limit" in p for p in verify(session_factory))


# --- the known failures of LLM gateways ----------------------------------------------------


def test_streamed_requests_cost_what_plain_ones_cost(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    acme = world["acme"]
    plain = usage_record(tenant_id=acme, stream=False, started_at=NOW)
    streamed = usage_record(tenant_id=acme, stream=True, ttft_us=30_000, started_at=NOW)
    # a stream cut short pays for what it produced; so does one that failed mid-way
    cut = usage_record(
        tenant_id=acme, stream=True, outcome="interrupted", completion_tokens=120, started_at=NOW
    )
    broken = usage_record(
        tenant_id=acme, stream=True, status=502, outcome="error", completion_tokens=120,
        started_at=NOW,
    )  # fmt: skip
    ingest(engine, plain, streamed, cut, broken)
    rate_all(engine)
    charges = usage_charges(session_factory)
    assert amount_of(charges[plain["request_id"]]) == PLAIN
    assert amount_of(charges[streamed["request_id"]]) == PLAIN
    assert amount_of(charges[cut["request_id"]]) == 1000 * 2 + 120 * 8
    assert amount_of(charges[broken["request_id"]]) == 1000 * 2 + 120 * 8
    assert balance(session_factory, ledger.REVENUE) == 2 * PLAIN + 2 * (1000 * 2 + 120 * 8)


def test_cached_tokens_are_priced_and_counted(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    acme = world["acme"]
    cached = usage_record(
        tenant_id=acme, prompt_tokens=10_000, cached_tokens=8_000, completion_tokens=100,
        started_at=NOW,
    )  # fmt: skip
    # a model whose book gives no cached price: cached tokens cost the input price, not 0
    no_discount = usage_record(
        tenant_id=acme, model="qwen2.5-7b-instruct", prompt_tokens=10_000, cached_tokens=8_000,
        completion_tokens=100, started_at=NOW,
    )  # fmt: skip
    all_cached = usage_record(
        tenant_id=acme, prompt_tokens=4_000, cached_tokens=4_000, completion_tokens=0,
        started_at=NOW,
    )  # fmt: skip
    ingest(engine, cached, no_discount, all_cached)
    rate_all(engine)
    charges = usage_charges(session_factory)
    assert amount_of(charges[cached["request_id"]]) == 2_000 * 2 + 4_000 + 100 * 8
    assert amount_of(charges[no_discount["request_id"]]) == 10_000 // 2 + 100
    assert amount_of(charges[all_cached["request_id"]]) == 2_000
    with session_factory() as session:
        dims = {
            ledger.usage_request_id(ext): d
            for ext, d in session.execute(
                select(LedgerTransactionRow.external_id, LedgerTransactionRow.dims)
            ).all()
        }
        kept = dict(session.execute(select(UsageRow.request_id, UsageRow.cached_tokens)).all())
    d = dims[cached["request_id"]]
    assert d is not None
    assert (d["input"], d["cached"], d["output"]) == (4_000, 4_000, 800)
    assert (d["prompt_tokens"], d["cached_tokens"]) == (10_000, 8_000)  # for the invoice
    assert dims[all_cached["request_id"]] is not None
    assert dims[all_cached["request_id"]]["cached"] == 2_000
    assert kept[cached["request_id"]] == 8_000  # the count stays with the record
    # and the pure core agrees with what was posted
    for rec in (cached, no_discount, all_cached):
        assert rate_usage(usage_line(rec), BOOK).amount_micros == amount_of(
            charges[rec["request_id"]]
        )


def test_retried_request_is_one_record_and_one_charge(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    """A request the gateway retried upstream is one request to the client: the gateway
    writes it once with ``attempts``; a line written twice (a flusher retried after a
    timeout, a journal adopted twice) carries the same request id and adds nothing."""
    acme = world["acme"]
    first_try = usage_record(tenant_id=acme, started_at=NOW)
    retried = {**first_try, "attempts": 2, "latency_us": 900_000}
    assert ingest(engine, first_try, retried) == 1  # both in one batch
    assert ingest(engine, retried) == 0
    rate_all(engine)
    assert ingest(engine, first_try) == 0
    rate_all(engine)
    assert list(usage_charges(session_factory)) == [first_try["request_id"]]
    assert balance(session_factory, ledger.REVENUE) == PLAIN
    assert funds(session_factory, acme).prepaid_micros == 100_000_000 - PLAIN


def test_rating_again_after_a_crash_mid_way_charges_once(
    engine: Engine, session_factory: sessionmaker[Session], world: dict[str, int]
) -> None:
    acme, bolt = world["acme"], world["bolt"]
    voucher(session_factory, "acme", "0.02")
    records = [usage_record(tenant_id=(acme, bolt)[i % 2], started_at=NOW) for i in range(20)]
    ingest(engine, *records)
    # a rater dies after writing its charges, before its commit: all of it is rolled back
    crashed = session_factory()
    done = billing.rate_pending(crashed, limit=8)
    assert done.charged == 8
    crashed.rollback()
    crashed.close()
    assert usage_charges(session_factory) == {}
    # one that committed its first batch, then died in the second
    with session_factory() as session:
        billing.rate_pending(session, limit=8)
        session.commit()
    dying = session_factory()
    billing.rate_pending(dying, limit=8)
    dying.close()  # no commit
    rate_all(engine, limit=8)
    rate_all(engine, limit=8)
    charges = usage_charges(session_factory)
    assert sorted(charges) == sorted(r["request_id"] for r in records)
    assert balance(session_factory, ledger.REVENUE) == 20 * PLAIN
    acme_paid = balance(session_factory, ledger.prepaid_account(acme))
    voucher_left = funds(session_factory, acme).vouchers[0].remaining_micros
    assert (100_000_000 - acme_paid) + (20_000 - voucher_left) == 10 * PLAIN
    assert verify(session_factory) == []
