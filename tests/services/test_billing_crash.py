"""Billing survives crashes and concurrency: exactly one charge per billable request, and a
ledger whose balances are the sums of its postings.

1. A writer process (``billing_writer.py``) ingests and rates a few thousand usage records
   and is killed with SIGKILL at random moments (seeded), then started again, until it
   finishes; the ledger must then agree, to the micro-unit, with the pure rating core.
2. Six raters share one backlog of 5,000 records while top-ups land on the same tenants
   (on PostgreSQL they claim records with SKIP LOCKED and hold the tenants they charge; on
   SQLite each takes the write lock before it reads).
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from suanli.billing import ledger
from suanli.billing.prices import load_packaged_price_book
from suanli.billing.rating import rate_usage
from suanli.domain.actor import SYSTEM
from suanli.domain.specs import TenantSpec
from suanli.gateway.metering import insert_records
from suanli.services import billing, tenants
from suanli.store.tables import UsageRow
from tests.services.billing_writer import make_source, usage_line

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CNY = "CNY"
BOOK = load_packaged_price_book()
SEED = 20250601
KILLS = 6


def tomorrow() -> datetime:
    """Midnight after today (UTC): records and vouchers lie ahead of the clock, and the
    same day gives the same source."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)


def setup_tenants(factory: sessionmaker[Session], start: datetime) -> dict[str, int]:
    """``ada`` prepaid with a voucher that expires half-way; ``bo`` prepaid with a credit
    limit and a voucher for deepseek-r1 only; ``cy`` postpaid with a small voucher."""
    ids = {}
    with factory() as session:
        for name, prepaid, limit in (("ada", True, 0), ("bo", True, 5_000_000), ("cy", False, 0)):
            row = tenants.create(session, SYSTEM, TenantSpec(name=name, country="CN"))
            row.prepaid, row.credit_limit_micros = prepaid, limit
            ids[name] = row.id
        session.flush()
        for name, amount in (("ada", "500"), ("bo", "300")):
            billing.top_up(session, SYSTEM, name, Decimal(amount), CNY, f"wire-{name}")
        half = start + timedelta(hours=3)
        far = start + timedelta(days=30)
        billing.grant_voucher(session, SYSTEM, "ada", Decimal("20"), CNY, half)
        billing.grant_voucher(session, SYSTEM, "bo", Decimal("15"), CNY, far, ["deepseek-r1"])
        billing.grant_voucher(session, SYSTEM, "cy", Decimal("2.5"), CNY, far)
        session.commit()
    return ids


def holdings(factory: sessionmaker[Session], tenant_ids: list[int]) -> dict[int, int]:
    """Each tenant's prepaid plus what its vouchers have left (micro-units, as it sees them)."""
    with factory() as session:
        funds = billing.funds_of(session, tenant_ids, CNY)
    return {
        t: f.prepaid_micros + sum(v.remaining_micros for v in f.vouchers) for t, f in funds.items()
    }


def due(records: list[dict[str, Any]]) -> dict[str, int]:
    """What each record should cost, by the pure core alone."""
    return {r["request_id"]: rate_usage(usage_line(r), BOOK).amount_micros for r in records}


def check_ledger(
    factory: sessionmaker[Session],
    records: list[dict[str, Any]],
    before: dict[int, int],
    added: dict[int, int] | None = None,
) -> None:
    """Every record stored once and rated, every billable one charged once with its amount,
    revenue the sum of it all, each tenant's money moved by exactly its charges, and
    ``verify`` clean."""
    owed = due(records)
    with factory() as session:
        stored = Counter(session.scalars(select(UsageRow.request_id)))
        unrated = session.scalar(select(func.count()).where(UsageRow.rated_at.is_(None)))
        txs = list(billing.load_transactions(session))
        revenue = -billing.raw_balances(session, [ledger.REVENUE]).get(ledger.REVENUE, 0)
        problems = billing.verify(session)
    assert set(stored) == set(owed)
    assert max(stored.values()) == 1
    assert unrated == 0
    charges: Counter[str] = Counter()
    charged: dict[str, int] = {}
    for tx in txs:
        if tx.kind == ledger.USAGE:
            request = ledger.usage_request_id(tx.external_id)
            assert request is not None
            charges[request] += 1
            charged[request] = -sum(
                p.amount_micros for p in tx.postings if p.account == ledger.REVENUE
            )
    assert all(n == 1 for n in charges.values())
    assert charged == {r: amount for r, amount in owed.items() if amount}
    assert revenue == sum(owed.values())
    per_tenant: dict[int, int] = defaultdict(int)
    for r in records:
        per_tenant[r["tenant_id"]] += owed[r["request_id"]]
    after = holdings(factory, list(before))
    added = added or {}
    for t in before:
        assert before[t] + added.get(t, 0) - after[t] == per_tenant[t], t
    assert problems == []


# --- killed and restarted --------------------------------------------------------------------


def database_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def stored_and_unrated(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory() as session:
        stored = session.scalar(select(func.count()).select_from(UsageRow)) or 0
        unrated = session.scalar(select(func.count()).where(UsageRow.rated_at.is_(None))) or 0
    return stored, unrated


def start_writer(url: str, source: Path, batch: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.services.billing_writer", url, str(source)]
    return subprocess.Popen(
        [*cmd, "--batch", str(batch)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def wait_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        rest = proc.stdout.read() if proc.poll() is not None else b""
        pytest.fail(f"the writer did not start: {(line + rest).decode(errors='replace')}")


def test_a_writer_killed_at_random_moments_charges_each_request_once(
    engine: Engine, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    start = tomorrow()
    ids = setup_tenants(session_factory, start)
    records = make_source(SEED, 6000, sorted(ids.values()), start.timestamp())
    source = tmp_path / "usage.jsonl"
    source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    before = holdings(session_factory, sorted(ids.values()))
    url = database_url(engine)

    rng = random.Random(SEED)
    kills = 0
    progress: list[tuple[int, int]] = []  # (records stored, of them unrated) at each kill
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "the writer did not finish in time"
        proc = start_writer(url, source, batch=rng.choice((25, 40, 60)))
        try:
            wait_ready(proc)
            if kills < KILLS:
                time.sleep(rng.uniform(0.05, 0.25))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    kills += 1
                    progress.append(stored_and_unrated(session_factory))
                    continue
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        assert proc.returncode == 0, out.decode(errors="replace")
        assert b"done" in out
        break
    assert kills >= 5, f"the writer finished after {kills} kills; give it more to do"
    # the kills landed while there was still work to do (records to store or to rate), not
    # after the writer was through
    midway = [p for p in progress if p[0] < len(records) or p[1] > 0]
    assert len(midway) >= 5, progress
    check_ledger(session_factory, records, before)


# --- concurrent raters -------------------------------------------------------------------------


def run_threads(workers: list[Callable[[], None]], seconds: float = 60) -> None:
    """Run each worker in a thread; re-raise the first error any of them hit."""
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(w)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    if errors:
        raise errors[0]


def test_concurrent_raters_and_top_ups_lose_nothing(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    start = tomorrow()
    ids = setup_tenants(session_factory, start)
    tenant_ids = sorted(ids.values())
    records = make_source(SEED + 1, 5000, tenant_ids, start.timestamp())
    insert_records(engine, records)
    before = holdings(session_factory, tenant_ids)
    paid: list[dict[int, int]] = [defaultdict(int), defaultdict(int)]  # one per top-up thread
    rated: list[int] = []

    def rater() -> None:
        idle = 0
        while idle < 3:  # a few empty rounds: the others may still roll back and leave work
            with session_factory() as session:
                done = billing.rate_pending(session, limit=97)
                session.commit()
            rated.append(done.records)
            idle = idle + 1 if done.records == 0 else 0
            if not done.records:
                time.sleep(0.01)

    def topper(k: int) -> None:
        rng = random.Random(k)
        for i in range(60):
            name = rng.choice(sorted(ids))
            cents = rng.randrange(1, 10_000)
            with session_factory() as session:
                billing.top_up(session, SYSTEM, name, Decimal(cents) / 100, CNY, f"pay-{k}-{i}")
                session.commit()
            paid[k][ids[name]] += cents * 10_000

    run_threads([rater] * 6 + [functools.partial(topper, k) for k in range(len(paid))])
    assert sum(rated) == len(records)
    added = {t: sum(p.get(t, 0) for p in paid) for t in tenant_ids}
    check_ledger(session_factory, records, before, added)
