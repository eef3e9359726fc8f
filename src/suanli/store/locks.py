"""Row locks that work on SQLite and PostgreSQL alike.

On PostgreSQL, ``SELECT ... ORDER BY id FOR NO KEY UPDATE`` takes the rows' write locks
(held to commit; the strength an ``UPDATE`` of non-key columns takes, in a fixed order so
two lockers cannot deadlock) without writing new row versions. On SQLite a no-op
``UPDATE t SET id = id WHERE ...`` takes the database's write lock — and because SQLite
starts the transaction at that statement, every read after it sees what other writers
committed before. Call it before reading what a decision depends on.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from suanli.store.tables import Base


def lock_rows(session: Session, table: type[Base], ids: Iterable[int] | None = None) -> None:
    """Lock rows of ``table`` by id (all rows when ``ids`` is None) until commit."""
    column = table.id  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        query = select(column).order_by(column).with_for_update(key_share=True)
        if ids is not None:
            query = query.where(column.in_(sorted(set(ids))))
        session.execute(query).all()
        return
    # every column set to itself, so that no onupdate default (updated_at) fires
    keep = {c.name: c for c in table.__table__.columns if c.onupdate is not None or c.name == "id"}
    stmt = update(table).values(keep)
    if ids is not None:
        stmt = stmt.where(column.in_(sorted(set(ids))))
    session.execute(stmt.execution_options(synchronize_session=False))
