"""Writing the ledger: transactions, their postings and the running balances, in batches.

A handful of statements per batch whatever its size; the external id of a transaction is
unique, so posting it again with the same content is a no-op and with different content a
``TransactionConflictError``. Everything runs in the caller's database transaction.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from suanli.billing import ledger
from suanli.billing.ledger import Transaction
from suanli.store.tables import LedgerBalanceRow, LedgerPostingRow, LedgerTransactionRow
from suanli.store.types import UTCDateTime, utcnow

__all__ = ["CHUNK", "chunks", "post", "post_validated"]

CHUNK = 900  # ids per IN (...) query: under SQLite's variable limit on old versions too


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def post(
    session: Session,
    transactions: Sequence[Transaction],
    dims: Sequence[dict[str, Any] | None] | None = None,
) -> int:
    """Store ``transactions`` (validated) with their postings and balances; returns how many
    were new. A repeat (same external id, same content) is skipped."""
    for tx in transactions:
        tx.validate()
    return post_validated(session, transactions, dims)


def post_validated(
    session: Session,
    transactions: Sequence[Transaction],
    dims: Sequence[dict[str, Any] | None] | None = None,
) -> int:
    """``post`` of transactions already validated (those ``suanli.billing.ledger`` builds).

    A handful of statements whatever the number of transactions: one to find the external
    ids already there, one (PostgreSQL: ``unnest`` of arrays) or one batch (SQLite) for the
    transactions, the same for their postings, one upsert per account touched."""
    if not transactions:
        return 0
    dims = dims or [None] * len(transactions)
    fresh: list[tuple[Transaction, str, dict[str, Any] | None]] = []
    wanted: dict[str, str] = {}
    for tx, dim in zip(transactions, dims, strict=True):
        fp = tx.fingerprint()
        if tx.external_id in wanted:
            if wanted[tx.external_id] != fp:
                raise ledger.TransactionConflictError(
                    f"transaction {tx.external_id!r} appears twice with different content"
                )
            continue
        wanted[tx.external_id] = fp
        fresh.append((tx, fp, dim))
    seen = _fingerprints(session, list(wanted))
    new = []
    for tx, fp, dim in fresh:
        if tx.external_id in seen:
            if seen[tx.external_id] != fp:
                raise ledger.TransactionConflictError(
                    f"transaction {tx.external_id!r} was already recorded with different content"
                )
            continue
        new.append((tx, fp, dim))
    if not new:
        return 0
    now = utcnow()
    ids = _insert_transactions(session, new, now)
    postings: list[tuple[int, str, int, str]] = []
    deltas: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for tx, _fp, _dim in new:
        tx_id = ids[tx.external_id]
        for p in tx.postings:
            postings.append((tx_id, p.account, p.amount_micros, p.currency))
            delta = deltas[(p.account, p.currency)]
            delta[0] += p.amount_micros
            delta[1] += 1
    _insert_postings(session, postings)
    _add_to_balances(session, deltas, now)
    return len(new)


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _fingerprints(session: Session, external_ids: list[str]) -> dict[str, str]:
    """The stored fingerprint of each of ``external_ids`` that is recorded already."""
    if _is_postgres(session):
        rows = session.execute(
            text(
                "SELECT external_id, fingerprint FROM ledger_transactions "
                "WHERE external_id = ANY(CAST(:ids AS VARCHAR[]))"
            ),
            {"ids": external_ids},
        )
        return {str(ext): str(fp) for ext, fp in rows}
    seen: dict[str, str] = {}
    for chunk in chunks(external_ids):
        stmt = select(LedgerTransactionRow.external_id, LedgerTransactionRow.fingerprint).where(
            LedgerTransactionRow.external_id.in_(chunk)
        )
        seen.update((ext, fp) for ext, fp in session.execute(stmt))
    return seen


_UTC = UTCDateTime()


def _utc(at: datetime, dialect: Dialect) -> datetime:
    """``at`` as the ``UTCDateTime`` columns store it (a naive time is refused)."""
    value = _UTC.process_bind_param(at, dialect)
    assert value is not None
    return value


def _insert_transactions(
    session: Session,
    new: list[tuple[Transaction, str, dict[str, Any] | None]],
    now: datetime,
) -> dict[str, int]:
    """Insert the transactions' rows; the id of each, by external id."""
    dialect = session.get_bind().dialect
    if dialect.name == "postgresql":
        # one JSON document for all the rows: arrays of JSON texts cost the server far more
        doc = [
            {
                "e": tx.external_id,
                "k": tx.kind,
                "f": fp,
                "a": _utc(tx.at, dialect).isoformat(),
                "m": tx.memo,
                "d": dim,
            }
            for tx, fp, dim in new
        ]
        rows = session.execute(
            text(
                "INSERT INTO ledger_transactions "
                "(external_id, kind, fingerprint, at, memo, dims, created_at) "
                "SELECT e, k, f, a, m, d, :now "
                "FROM json_to_recordset(CAST(:doc AS JSON)) "
                "AS t(e VARCHAR, k VARCHAR, f VARCHAR, a TIMESTAMPTZ, m TEXT, d JSON) "
                "RETURNING id, external_id"
            ),
            {"doc": json.dumps(doc), "now": now},
        )
        return {str(ext): int(tx_id) for tx_id, ext in rows}
    _insert_many(
        session,
        LedgerTransactionRow.__table__,
        ("external_id", "kind", "fingerprint", "at", "memo", "dims", "created_at"),
        [(tx.external_id, tx.kind, fp, tx.at, tx.memo, dim, now) for tx, fp, dim in new],
    )
    ids: dict[str, int] = {}
    for chunk in chunks([tx.external_id for tx, _, _ in new]):
        stmt = select(LedgerTransactionRow.external_id, LedgerTransactionRow.id).where(
            LedgerTransactionRow.external_id.in_(chunk)
        )
        ids.update((ext, tx_id) for ext, tx_id in session.execute(stmt))
    return ids


def _insert_postings(session: Session, postings: list[tuple[int, str, int, str]]) -> None:
    if _is_postgres(session):
        session.execute(
            text(
                "INSERT INTO ledger_postings (transaction_id, account, amount_micros, currency) "
                "SELECT * FROM unnest(CAST(:t AS INTEGER[]), CAST(:a AS VARCHAR[]), "
                "CAST(:m AS BIGINT[]), CAST(:c AS VARCHAR[]))"
            ),
            {
                "t": [p[0] for p in postings],
                "a": [p[1] for p in postings],
                "m": [p[2] for p in postings],
                "c": [p[3] for p in postings],
            },
        )
        return
    _insert_many(
        session,
        LedgerPostingRow.__table__,
        ("transaction_id", "account", "amount_micros", "currency"),
        postings,
    )


def _insert_many(
    session: Session, table: Any, names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """``executemany`` straight on the driver, each value through its column's own bind
    processing: the same rows as an ``insert()`` would store, without building a parameter
    dictionary per row (SQLite; PostgreSQL inserts from arrays or a JSON document)."""
    assert isinstance(table, Table)
    conn = session.connection()
    dialect = conn.dialect
    processors = [table.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names]
    if any(processors):
        rows = [
            tuple(v if f is None else f(v) for f, v in zip(processors, row, strict=True))
            for row in rows
        ]
    columns = ", ".join(names)
    marks = ", ".join("?" * len(names))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", list(rows))


def _add_to_balances(
    session: Session, deltas: dict[tuple[str, str], list[int]], now: datetime
) -> None:
    """balance += delta, atomically per row (an upsert), in a fixed order (no deadlocks)."""
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    table = LedgerBalanceRow.__table__
    for (account, currency), (amount, count) in sorted(deltas.items()):
        stmt = module.insert(table).values(
            account=account,
            currency=currency,
            balance_micros=amount,
            postings=count,
            updated_at=now,
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["account", "currency"],
            set_={
                "balance_micros": table.c.balance_micros + amount,
                "postings": table.c.postings + count,
                "updated_at": now,
            },
        )
        session.execute(stmt)
