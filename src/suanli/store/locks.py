"""Row locks that work on SQLite and PostgreSQL alike.

A no-op ``UPDATE t SET id = id WHERE ...`` takes the rows' write locks on PostgreSQL (held to
commit, like ``SELECT ... FOR UPDATE``) and, on SQLite, the database's write lock — and
because SQLite starts the transaction at that statement, every read after it sees what
other writers committed before. Call it before reading what a decision depends on.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import update
from sqlalchemy.orm import Session

from suanli.store.tables import Base


def lock_rows(session: Session, table: type[Base], ids: Iterable[int] | None = None) -> None:
    """Lock rows of ``table`` by id (all rows when ``ids`` is None) until commit."""
    column = table.id  # type: ignore[attr-defined]
    # every column set to itself, so that no onupdate default (updated_at) fires
    keep = {c.name: c for c in table.__table__.columns if c.onupdate is not None or c.name == "id"}
    stmt = update(table).values(keep)
    if ids is not None:
        stmt = stmt.where(column.in_(sorted(set(ids))))
    session.execute(stmt.execution_options(synchronize_session=False))
