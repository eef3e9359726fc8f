"""Billing throughput: usage records ingested and rated into the ledger, per backend.

For each backend (SQLite in a file under a temp directory; PostgreSQL when ``--pg-url`` or
``SUANLI_BENCH_PG_URL`` names a server, in a scratch database created and dropped here) the
script migrates a fresh database per run, creates a few prepaid and postpaid tenants with
top-ups and vouchers, and measures:

1. **batched**: *N* synthetic usage records (default 100,000) go in the way the gateway's
   flusher and the billing loop move them: batches of ``--batch`` (5,000) records, each
   ``insert_records`` (one transaction) then ``rate_pending`` over the same number of
   records and a commit. Records per second over the whole loop, the median of ``--runs``
   runs (3), with the share of the time spent inserting and rating.
2. **naive**: the baseline, measured in the same invocation: one database transaction per
   record (insert the record, rate it, commit), over fewer records (``--naive``, 2,000).

The ratio batched / naive is printed next to both. After each run the database is checked:
every record rated, every billable one charged once, revenue equal to the sum of the
charges. Nothing is asserted about speed; the figures go to the terminal and to
``bench/results/billing.json``.

    python bench/billing.py --quick                  # seconds: 10,000 records, 500 naive
    python bench/billing.py                          # 100,000 records, 2,000 naive
    python bench/billing.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres
    python bench/billing.py --profile                # where one batched run spends its time
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from suanli import __version__
from suanli.billing import ledger
from suanli.domain.actor import SYSTEM
from suanli.domain.specs import TenantSpec
from suanli.gateway.metering import insert_records
from suanli.services import billing, tenants
from suanli.store import migrate
from suanli.store.db import make_engine, make_sessionmaker
from suanli.store.tables import LedgerTransactionRow, UsageRow

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "billing.json"
PG_ENV = "SUANLI_BENCH_PG_URL"
TARGET = 20_000  # records per second, batched
CNY = "CNY"
MODELS = ("deepseek-v3", "deepseek-r1", "qwen2.5-7b-instruct", "qwen2.5-72b-instruct", "other")
TENANTS = ("t-prepaid-a", "t-prepaid-b", "t-postpaid", "t-voucher", "t-small")


# --- databases ------------------------------------------------------------------------------


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_database(backend: str, workdir: Path, pg_url: str | None) -> Iterator[Engine]:
    """A migrated, empty database; removed (PostgreSQL: dropped) afterwards."""
    if backend == "sqlite":
        path = workdir / f"billing-{secrets.token_hex(4)}.db"
        engine = make_engine(f"sqlite:///{path}")
        try:
            migrate.upgrade(engine)
            yield engine
        finally:
            engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert pg_url is not None
    base = make_url(pg_url)
    maintenance = _libpq(base.set(database="postgres"))
    name = f"suanli_bench_{secrets.token_hex(4)}"
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    engine = make_engine(base.set(database=name).render_as_string(hide_password=False))
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# --- data -----------------------------------------------------------------------------------


def setup_tenants(factory: sessionmaker[Session]) -> list[int]:
    """Prepaid tenants with money, a postpaid one, vouchers (one for one model only)."""
    far = datetime.now(UTC) + timedelta(days=365)
    ids = []
    with factory() as session:
        for name in TENANTS:
            row = tenants.create(session, SYSTEM, TenantSpec(name=name, country="CN"))
            row.prepaid = name != "t-postpaid"
            ids.append(row.id)
        session.flush()
        for name in TENANTS:
            if name != "t-postpaid":
                billing.top_up(session, SYSTEM, name, Decimal(1_000_000), CNY, f"wire-{name}")
        billing.grant_voucher(session, SYSTEM, "t-voucher", Decimal(50), CNY, far)
        billing.grant_voucher(session, SYSTEM, "t-small", Decimal(5), CNY, far, ["deepseek-r1"])
        session.commit()
    return ids


def synthetic_records(count: int, tenant_ids: list[int], seed: int) -> list[dict[str, Any]]:
    """Gateway usage records (journal format): mixed models, cached tokens, streams, a few
    failures without output."""
    rng = random.Random(seed)
    start = time.time() - 3600
    out = []
    for i in range(count):
        prompt = rng.randrange(1, 8000)
        failed = rng.random() < 0.02
        tenant = tenant_ids[rng.randrange(len(tenant_ids))]
        at = start + i * 0.01
        out.append(
            {
                "request_id": f"bench-{seed}-{i:08d}",
                "tenant_id": tenant,
                "credential_id": tenant * 10 + rng.randrange(3),
                "endpoint": "chat",
                "model": MODELS[rng.randrange(len(MODELS))],
                "deployment_id": 1,
                "replica_id": 1 + rng.randrange(4),
                "node": f"node-{rng.randrange(8)}",
                "chip": "H100 SXM",
                "stream": rng.random() < 0.5,
                "prompt_tokens": prompt,
                "completion_tokens": 0 if failed else rng.randrange(1, 1500),
                "cached_tokens": rng.randrange(prompt) if rng.random() < 0.3 else 0,
                "status": 503 if failed else 200,
                "outcome": "error" if failed else "ok",
                "error_code": "upstream_unavailable" if failed else "",
                "latency_us": rng.randrange(50_000, 5_000_000),
                "ttft_us": rng.randrange(10_000, 500_000),
                "attempts": 1,
                "started_at": at,
                "finished_at": at + 0.5,
                "gateway": "bench",
            }
        )
    return out


# --- the two ways -----------------------------------------------------------------------------


def batched(
    engine: Engine, records: list[dict[str, Any]], batch: int
) -> tuple[float, float, float]:
    """Insert then rate, batch by batch; (total, inserting, rating) seconds."""
    factory = make_sessionmaker(engine)
    inserting = rating = 0.0
    t0 = time.perf_counter()
    for first in range(0, len(records), batch):
        t = time.perf_counter()
        insert_records(engine, records[first : first + batch])
        t2 = time.perf_counter()
        with factory() as session:
            billing.rate_pending(session, limit=batch)
            session.commit()
        inserting += t2 - t
        rating += time.perf_counter() - t2
    with factory() as session:  # nothing may be left behind
        assert billing.rate_pending(session).records == 0
    return time.perf_counter() - t0, inserting, rating


def _usage_insert(engine: Engine) -> Any:
    table = UsageRow.__table__
    assert isinstance(table, Table)
    module: Any = postgresql if engine.dialect.name == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=["request_id"])


def naive(engine: Engine, records: list[dict[str, Any]]) -> float:
    """One database transaction per record: insert it, rate it, commit; seconds."""
    factory = make_sessionmaker(engine)
    stmt = _usage_insert(engine)
    t0 = time.perf_counter()
    for r in records:
        row = {
            **r,
            "started_at": datetime.fromtimestamp(r["started_at"], UTC),
            "finished_at": datetime.fromtimestamp(r["finished_at"], UTC),
        }
        with factory() as session:
            session.execute(stmt, [row])
            billing.rate_pending(session, limit=1)
            session.commit()
    return time.perf_counter() - t0


def check(engine: Engine, records: list[dict[str, Any]]) -> None:
    """Every record stored and rated, one charge per billable record, revenue = charges."""
    with make_sessionmaker(engine)() as session:
        stored = session.scalar(select(func.count()).select_from(UsageRow))
        unrated = session.scalar(select(func.count()).where(UsageRow.rated_at.is_(None)))
        charges = session.scalar(
            select(func.count()).where(LedgerTransactionRow.kind == ledger.USAGE)
        )
        revenue = -billing.raw_balances(session, [ledger.REVENUE]).get(ledger.REVENUE, 0)
    billable = sum(1 for r in records if not (r["status"] >= 400 and not r["completion_tokens"]))
    assert stored == len(records), (stored, len(records))
    assert unrated == 0, unrated
    # a request can cost 0 even with tokens (a tiny prompt on a cheap model): at most that many
    assert charges is not None
    assert 0.95 * billable < charges <= billable, (charges, billable)
    assert revenue > 0


# --- running ----------------------------------------------------------------------------------


def measure(
    backend: str,
    pg_url: str | None,
    workdir: Path,
    args: argparse.Namespace,
    say: Callable[..., Any],
) -> dict[str, Any]:
    runs = []
    for k in range(args.runs):
        with fresh_database(backend, workdir, pg_url) as engine:
            ids = setup_tenants(make_sessionmaker(engine))
            records = synthetic_records(args.records, ids, seed=k)
            profiler = cProfile.Profile() if args.profile and k == 0 else None
            if profiler is not None:
                profiler.enable()
            total, inserting, rating = batched(engine, records, args.batch)
            if profiler is not None:
                profiler.disable()
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
                say(out.getvalue())
            check(engine, records)
        runs.append({"seconds": total, "inserting": inserting, "rating": rating})
        say(
            f"  {backend} batched run {k + 1}: {args.records / total:,.0f} records/s "
            f"(insert {inserting:.2f} s, rate {rating:.2f} s)"
        )
    naive_runs = []
    for k in range(args.runs):
        with fresh_database(backend, workdir, pg_url) as engine:
            ids = setup_tenants(make_sessionmaker(engine))
            records = synthetic_records(args.naive, ids, seed=100 + k)
            seconds = naive(engine, records)
            check(engine, records)
        naive_runs.append(seconds)
        say(f"  {backend} naive run {k + 1}: {args.naive / seconds:,.0f} records/s")
    rate = statistics.median(args.records / r["seconds"] for r in runs)
    base = statistics.median(args.naive / s for s in naive_runs)
    median_run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {
        "backend": backend,
        "records": args.records,
        "batch": args.batch,
        "batched_records_per_s": rate,
        "insert_share": median_run["inserting"] / median_run["seconds"],
        "rate_share": median_run["rating"] / median_run["seconds"],
        "insert_records_per_s": args.records / median_run["inserting"],
        "rate_records_per_s": args.records / median_run["rating"],
        "naive_records": args.naive,
        "naive_records_per_s": base,
        "ratio": rate / base,
        "target_met": rate >= TARGET,
        "runs": runs,
        "naive_seconds": naive_runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--naive", type=int, default=2000, help="records for the baseline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg-url", default=os.environ.get(PG_ENV))
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10,000 records, 500 naive")
    parser.add_argument("--profile", action="store_true", help="profile the first batched run")
    args = parser.parse_args()
    if args.quick:
        args.records, args.naive = 10_000, 500
    if args.records < 1 or args.naive < 1 or args.batch < 1 or args.runs < 1:
        parser.error("counts must be at least 1")

    def say(*parts: Any) -> None:
        print(*parts, flush=True)

    backends = ([] if args.no_sqlite else ["sqlite"]) + (["postgresql"] if args.pg_url else [])
    if not backends:
        parser.error("nothing to measure: give --pg-url or drop --no-sqlite")
    results = []
    with tempfile.TemporaryDirectory(prefix="suanli-bench-billing-") as tmp:
        for backend in backends:
            say(f"{backend}: {args.records:,} records in batches of {args.batch:,}, ")
            results.append(measure(backend, args.pg_url, Path(tmp), args, say))

    say("")
    say(
        f"| backend | batched records/s (median of {args.runs}) | insert / rate share "
        "| naive records/s | batched / naive | target 20,000/s |"
    )
    say("|---|---:|---:|---:|---:|---|")
    for r in results:
        say(
            f"| {r['backend']} | {r['batched_records_per_s']:,.0f} "
            f"| {r['insert_share']:.0%} / {r['rate_share']:.0%} "
            f"| {r['naive_records_per_s']:,.0f} | {r['ratio']:.1f}x "
            f"| {'met' if r['target_met'] else 'not met'} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "suanli": __version__,
                "python": sys.version.split()[0],
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    say(f"\nwritten to {RESULTS.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
