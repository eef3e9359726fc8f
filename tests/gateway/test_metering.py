"""Usage metering: the journal (durable before the answer, exactly once in the database) and a
gateway process killed with SIGKILL whose records a later process adopts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, func, select

from suanli.gateway import metering
from suanli.gateway.metering import Journal, insert_records
from suanli.store.db import make_sessionmaker
from suanli.store.tables import UsageRow
from tests.gateway.conftest import Served, World, wait_until
from tests.gateway.fake_upstream import PROMPT_TOKENS

BIN = Path(sys.executable).parent / "suanli"


def record(**changes: Any) -> dict[str, Any]:
    now = time.time()
    base = {
        "request_id": str(uuid.uuid4()),
        "tenant_id": 1,
        "credential_id": 1,
        "endpoint": "chat",
        "model": "m",
        "deployment_id": 1,
        "replica_id": 1,
        "node": "external",
        "chip": "",
        "stream": False,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "status": 200,
        "outcome": "ok",
        "error_code": "",
        "latency_us": 1000,
        "ttft_us": 500,
        "attempts": 1,
        "started_at": now - 0.001,
        "finished_at": now,
        "gateway": "test",
    }
    return {**base, **changes}


def stored(engine: Engine) -> list[str]:
    """The request ids in the database."""
    with make_sessionmaker(engine)() as session:
        return sorted(session.scalars(select(UsageRow.request_id)))


def journal_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("usage-*.jsonl"))


@pytest.fixture
def journal(engine: Engine, tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal", engine)
    j.open()
    yield j
    if j._fd >= 0:
        j.close()


def crash(j: Journal) -> None:
    """What a SIGKILL leaves behind: the file, its lock released, nothing flushed."""
    os.close(j._fd)
    j._fd = -1


# --- the journal ---------------------------------------------------------------------------


def test_flush_moves_lines_once(journal: Journal, engine: Engine) -> None:
    records = [record() for _ in range(3)]
    for r in records:
        journal.write(r)
    assert journal.flush() == 3
    assert journal.flush() == 0  # nothing new
    assert stored(engine) == sorted(r["request_id"] for r in records)
    # the same lines again (a flusher that died between its insert and its bookkeeping)
    assert insert_records(engine, records + records) == 0
    journal.write(records[0])  # a replayed line
    journal.write(extra := record())
    assert journal.flush() == 2
    assert stored(engine) == sorted([*(r["request_id"] for r in records), extra["request_id"]])
    with make_sessionmaker(engine)() as session:
        row = session.scalar(select(UsageRow).where(UsageRow.request_id == extra["request_id"]))
    assert row is not None
    assert (row.prompt_tokens, row.completion_tokens, row.latency_us, row.ttft_us) == (
        10,
        5,
        1000,
        500,
    )
    assert abs(row.finished_at.timestamp() - extra["finished_at"]) < 1e-3


def test_torn_last_line_waits_for_its_end(journal: Journal, engine: Engine) -> None:
    whole, torn = record(), record()
    journal.write(whole)
    line = orjson.dumps(torn) + b"\n"
    os.write(journal._fd, line[:40])  # a write the flusher sees half of
    assert journal.flush() == 1
    assert stored(engine) == [whole["request_id"]]
    os.write(journal._fd, line[40:])
    assert journal.flush() == 1
    assert stored(engine) == sorted([whole["request_id"], torn["request_id"]])


def test_failed_flush_is_retried(
    journal: Journal, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = record()
    journal.write(first)
    real = metering.insert_records

    def down(engine: Engine, records: list[dict[str, Any]]) -> int:
        real(engine, records[:1])  # some went in before the connection broke
        raise OSError("the database went away")

    monkeypatch.setattr(metering, "insert_records", down)
    journal.write(second := record())
    with pytest.raises(OSError, match="went away"):
        journal.flush()
    monkeypatch.setattr(metering, "insert_records", real)
    journal.write(third := record())
    assert journal.flush() == 3
    assert stored(engine) == sorted(r["request_id"] for r in (first, second, third))


def test_rotation_loses_nothing(
    journal: Journal, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metering, "ROTATE_BYTES", 1)
    directory = journal.directory
    first = [record() for _ in range(2)]
    for r in first:
        journal.write(r)
    journal.flush()
    (old,) = journal_files(directory)
    # a request finishes while the flusher is busy in its thread: after the read, before the
    # rotation, which runs on the event loop once the flush returns
    journal.write(late := record())
    journal.rotate_if_large()
    journal.write(after := record())
    journal.flush()
    assert not old.exists()
    (new,) = journal_files(directory)
    assert new != old
    everything = [*first, late, after]
    assert stored(engine) == sorted(r["request_id"] for r in everything)
    journal.close()
    assert journal_files(directory) == []
    assert stored(engine) == sorted(r["request_id"] for r in everything)


def test_damaged_line_does_not_hold_back_the_rest(journal: Journal, engine: Engine) -> None:
    os.write(journal._fd, b'{"request_id": "cut short by a full disk\n')
    journal.write(r := record())
    assert journal.flush() == 1
    assert stored(engine) == [r["request_id"]]


def test_absurd_usage_from_an_engine_is_stored(gw: Served) -> None:
    """An engine's usage numbers go to 32-bit columns: one beyond them must not make a record
    the database refuses (which would hold back every record after it)."""
    client = gw.client()
    huge = {"fake": {"prompt_tokens": 2**40}}
    client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], extra_body=huge
    )
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    first, second = gw.records(2)
    assert first.prompt_tokens == 2**31 - 1
    assert second.prompt_tokens == PROMPT_TOKENS


def test_close_flushes_and_removes_the_file(journal: Journal, engine: Engine) -> None:
    journal.write(r := record())
    journal.close()
    assert stored(engine) == [r["request_id"]]
    assert journal_files(journal.directory) == []


def test_orphans_are_adopted_once(journal: Journal, engine: Engine) -> None:
    directory = journal.directory
    flushed, unflushed, torn = record(), record(), record()
    journal.write(flushed)
    journal.flush()
    journal.write(unflushed)
    os.write(journal._fd, orjson.dumps(torn)[:30])  # killed in the middle of a write
    crash(journal)
    live = Journal(directory, engine)
    live.open()
    try:
        other = Journal(directory, engine)  # a live process's journal is left alone
        other.open()
        other.write(theirs := record())
        assert live.adopt_orphans() == 2  # the dead one's complete lines
        assert stored(engine) == sorted([flushed["request_id"], unflushed["request_id"]])
        assert len(journal_files(directory)) == 2  # live's and other's
        assert live.adopt_orphans() == 0
        other.close()
        assert theirs["request_id"] in stored(engine)
    finally:
        live.close()
    assert journal_files(directory) == []


def test_a_starting_journal_is_never_adopted(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gateway processes start together (``--workers``) and each adopts orphans at start: one
    must not take (and delete) the journal another has just created and not yet locked."""
    directory = tmp_path / "journal"
    directory.mkdir()
    adopter = Journal(directory, engine)
    starting = Journal(directory, engine)
    real_flock = metering.fcntl.flock
    raced = []

    class Fcntl:
        LOCK_EX, LOCK_NB, LOCK_UN = (
            metering.fcntl.LOCK_EX,
            metering.fcntl.LOCK_NB,
            metering.fcntl.LOCK_UN,
        )

        @staticmethod
        def flock(fd: int, op: int) -> None:
            if not raced:  # the first lock taken is the starting journal's
                raced.append(True)
                adopter.adopt_orphans()  # runs in the window between create and lock
            real_flock(fd, op)

    monkeypatch.setattr(metering, "fcntl", Fcntl)
    starting.open()
    monkeypatch.undo()
    assert raced
    starting.write(r := record())
    assert journal_files(directory) == [starting._path]
    starting.close()
    assert stored(engine) == [r["request_id"]]


# --- the gateway's own flusher ----------------------------------------------------------------


def test_flusher_moves_records_without_help(serve: Callable[..., Served]) -> None:
    gw = serve(flush_s=0.05)
    gw.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    wait_until(lambda: gw.world.usage_count() == 1, 5, "the flusher")
    assert gw.gateway.journal.flushed == 1


def test_gateway_adopts_orphans_at_start(
    world: World, serve: Callable[..., Served], tmp_path: Path
) -> None:
    dead = Journal(tmp_path / "journal-0", world.engine)  # the next gateway's directory
    dead.open()
    dead.write(r := record())
    crash(dead)
    gw = serve()
    assert stored(world.engine) == [r["request_id"]]
    assert journal_files(tmp_path / "journal-0") == [gw.gateway.journal._path]


# --- a gateway process killed with SIGKILL ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GatewayProcess:
    def __init__(self, home: Path, database_url: str, key: str) -> None:
        self.home = home
        self.key = key
        self.env = {
            **os.environ,
            "SUANLI_HOME": str(home),
            "SUANLI_DATABASE_URL": database_url,
            "SUANLI_GATEWAY_FLUSH_S": "30",  # nothing reaches the database on its own
            "SUANLI_GATEWAY_REFRESH_S": "0.2",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # the free port may be taken before the gateway binds it
            port = free_port()
            log = self.home / f"gateway-{port}.log"
            with log.open("wb") as out:
                self.proc = subprocess.Popen(
                    [str(BIN), "gateway", "--port", str(port)],
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while self.proc.poll() is None and time.monotonic() < deadline:
                if self._answers():
                    return
                time.sleep(0.05)
            self.stop()
        raise AssertionError(f"the gateway did not start:\n{log.read_text()}")

    def _answers(self) -> bool:
        try:
            response = httpx.get(
                self.url + "/v1/models", headers={"authorization": f"Bearer {self.key}"}
            )
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def processes() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for p in started:
        p.stop()


@pytest.mark.slow
def test_sigkill_loses_no_usage(
    world: World, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    url = world.engine.url.render_as_string(hide_password=False)
    home = tmp_path / "home"
    first = GatewayProcess(home, url, world.key)
    processes.append(first)
    first.start()
    auth = {"authorization": f"Bearer {world.key}"}
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    bodies = [
        ("/v1/chat/completions", chat),
        ("/v1/chat/completions", {**chat, "stream": True}),
        ("/v1/completions", {"model": "m", "prompt": "Once", "stream": True}),
        ("/v1/chat/completions", {**chat, "model": "missing"}),  # refused: metered too
        ("/v1/chat/completions", {**chat, "max_tokens": 3}),
    ]
    ids, statuses = [], []
    with httpx.Client(base_url=first.url, headers=auth, timeout=10) as client:
        for path, body in bodies:
            response = client.post(path, json=body)
            ids.append(response.headers["x-request-id"])
            statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 404, 200]
    first.kill()
    with make_sessionmaker(world.engine)() as session:
        assert session.scalar(select(func.count()).select_from(UsageRow)) == 0
    (orphan,) = journal_files(home / "usage-journal")
    assert len(orphan.read_bytes().splitlines()) == len(bodies)

    second = GatewayProcess(home, url, world.key)
    processes.append(second)
    second.start()  # adopts the orphan before it serves
    assert stored(world.engine) == sorted(ids)
    assert not orphan.exists()
    with httpx.Client(base_url=second.url, headers=auth, timeout=10) as client:
        last = client.post("/v1/chat/completions", json=chat)
    assert last.status_code == 200
    second.stop()  # a clean stop flushes its own journal
    assert stored(world.engine) == sorted([*ids, last.headers["x-request-id"]])
    assert journal_files(home / "usage-journal") == []
