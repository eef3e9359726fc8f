"""Usage records: durable before the answer completes, exactly once in the database.

Each gateway process appends one JSON line per request to its own journal file with a
single ``write`` to an ``O_APPEND`` descriptor, *before* it sends the last bytes of the
answer. Once ``write`` returns the line is in the kernel, so a ``kill -9`` of the gateway
loses nothing (``fsync=True`` also survives a crash of the machine, at a cost per request).
A flusher moves the lines into ``usage_records`` in batches; the table's unique
``request_id`` makes a replayed line a no-op. A process holds an ``flock`` on its journal;
journals whose owner died are taken over, ingested and removed by any live gateway.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from suanli.store.tables import UsageRow

log = logging.getLogger("suanli.gateway.metering")
ROTATE_BYTES = 64 * 1024 * 1024
BATCH = 5000


def insert_records(engine: Engine, records: list[dict[str, Any]]) -> int:
    """Insert records, skipping request ids already there; returns how many were new."""
    if not records:
        return 0
    rows = [_row(r) for r in records]
    table = UsageRow.__table__
    assert isinstance(table, Table)
    if engine.dialect.name == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing(index_elements=["request_id"])
    elif engine.dialect.name == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=["request_id"])
    else:  # pragma: no cover - only the two supported databases
        stmt = insert(table)
    new = 0
    with engine.begin() as conn:
        for start in range(0, len(rows), BATCH):
            result = conn.execute(stmt, rows[start : start + BATCH])
            new += max(result.rowcount, 0)
    return new


def _row(r: dict[str, Any]) -> dict[str, Any]:
    row = dict(r)
    row.setdefault("catalog_model", "")  # journals written before the field existed
    row["started_at"] = datetime.fromtimestamp(r["started_at"], UTC)
    row["finished_at"] = datetime.fromtimestamp(r["finished_at"], UTC)
    return row


class Journal:
    """This process's append-only usage journal and its flusher."""

    def __init__(self, directory: Path, engine: Engine, fsync: bool = False) -> None:
        self.directory = directory
        self.engine = engine
        self.fsync = fsync
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.written = 0
        self.flushed = 0
        self._fd = -1
        self._path = directory / "none"
        self._read_offset = 0
        self._pending = b""
        # rotated-out files still to drain: (descriptor, path, offset read to, pending bytes)
        self._retired: list[tuple[int, Path, int, bytes]] = []

    # --- writing (hot path) ---------------------------------------------------------------

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._open_new()

    def _open_new(self) -> None:
        name = f"usage-{self.name}-{int(time.time() * 1000)}.jsonl"
        # created under a name adopt_orphans does not look at, locked, then renamed: another
        # process adopting orphans never finds it unlocked (and deletes it, or holds its lock)
        creating = self.directory / f"new-{name}"
        fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._path = self.directory / name
        os.rename(creating, self._path)
        self._fd = fd
        self._read_offset = 0
        self._pending = b""

    def write(self, record: dict[str, Any]) -> None:
        """Append one record; returns once the kernel has it."""
        os.write(self._fd, orjson.dumps(record) + b"\n")
        if self.fsync:
            os.fsync(self._fd)
        self.written += 1

    # --- flushing (background) ------------------------------------------------------------

    def flush(self) -> int:
        """Move new complete lines of our journal into the database (blocking; a thread)."""
        moved = 0
        while self._retired:  # what was written to a rotated-out file after its last read
            fd, path, offset, pending = self._retired[0]
            with open(path, "rb") as f:
                f.seek(offset)
                records = _parse((pending + f.read()).splitlines())
            insert_records(self.engine, records)
            self._retired.pop(0)
            os.close(fd)
            path.unlink(missing_ok=True)
            self.flushed += len(records)
            moved += len(records)
        with open(self._path, "rb") as f:
            f.seek(self._read_offset)
            chunk = f.read()
        if not chunk:
            return moved
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        records = _parse(data[:cut].splitlines())
        insert_records(self.engine, records)  # raises: the same lines are read again next time
        self._pending = data[cut:]
        self._read_offset += len(chunk)
        self.flushed += len(records)
        return moved + len(records)

    def rotate_if_large(self) -> None:
        """Start a new file once the current one is large (on the event loop, between writes).

        Lines written to the old file while the flusher was reading it go in at the next
        flush, which then removes the file."""
        if self._read_offset >= ROTATE_BYTES:
            self._retired.append((self._fd, self._path, self._read_offset, self._pending))
            self._open_new()

    def adopt_orphans(self) -> int:
        """Ingest and remove journals of gateway processes that are gone."""
        taken = 0
        for path in sorted(self.directory.glob("usage-*.jsonl")):
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner is alive
                with os.fdopen(os.dup(fd), "rb") as f:
                    records = _parse(f.read().splitlines())  # a torn last line is skipped
                insert_records(self.engine, records)
                taken += len(records)
                path.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return taken

    def close(self) -> None:
        if self._fd >= 0:
            self.flush()
            os.close(self._fd)
            self._fd = -1
            self._path.unlink(missing_ok=True)


def _parse(lines: list[bytes]) -> list[dict[str, Any]]:
    """The records of journal lines; a line that is not one (torn by a crash or a full disk)
    is logged and skipped, so that it cannot hold back the lines after it."""
    records = []
    for line in lines:
        if not line:
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.warning("usage journal: skipped a damaged line: %r", line[:200])
    return records


async def flush_loop(
    journal: Journal, interval_s: float, on_error: Callable[[Exception], None] | None = None
) -> None:
    """Flush every ``interval_s``; look for orphaned journals every 30 s."""
    loop = asyncio.get_running_loop()
    last_adopt = 0.0
    while True:
        await asyncio.sleep(interval_s)
        try:
            await loop.run_in_executor(None, journal.flush)
            journal.rotate_if_large()
            if time.monotonic() - last_adopt > 30:
                last_adopt = time.monotonic()
                await loop.run_in_executor(None, journal.adopt_orphans)
        except (SQLAlchemyError, OSError) as exc:  # database away: the journal keeps it all
            log.warning("usage flush deferred: %s", exc)
            if on_error is not None:
                on_error(exc)
        except Exception as exc:  # anything else too: a flusher that stops loses no lines,
            log.exception("usage flush failed")  # but none reach the database until restart
            if on_error is not None:
                on_error(exc)
