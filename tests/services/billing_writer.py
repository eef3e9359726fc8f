"""Usage records for the billing tests, and a writer that ingests and rates them.

As a module: ``usage_record`` (one gateway usage record, as the journal writes it),
``usage_line`` (what rating needs of one), ``make_source`` (a deterministic stream of records
over a few tenants and models) and ``ingest_and_rate``.

As a script (the crash test runs it and kills it with SIGKILL)::

    python -m tests.services.billing_writer DATABASE_URL SOURCE.jsonl [--batch N]

it prints ``ready`` once connected, then loops: insert the next batch of records from the
source (``insert_records``: a request id already there is skipped), rate what is pending in
a session of its own, commit; until the source is exhausted and nothing is left to rate.
It prints ``done`` at the end. Killed and started again, it resumes at the first batch that
is not wholly in the database; whatever it had half done is done again, idempotently.
"""

from __future__ import annotations

import argparse
import random
import sys
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, select

from suanli.billing.rating import UsageLine
from suanli.gateway.metering import insert_records
from suanli.services import billing
from suanli.store.db import make_engine, make_sessionmaker
from suanli.store.tables import UsageRow

# (model, weight): models with and without a cached price, and one only the "*" price covers
MODELS = (
    ("deepseek-v3", 5),
    ("deepseek-r1", 2),
    ("qwen2.5-7b-instruct", 3),
    ("qwen2.5-72b-instruct", 1),
    ("some-unlisted-model", 1),
)


def usage_record(**changes: Any) -> dict[str, Any]:
    """One usage record as the gateway's journal holds it (times in epoch seconds)."""
    started = changes.pop("started_at", None)
    if isinstance(started, datetime):
        started = started.timestamp()
    started = float(started) if started is not None else 1_750_000_000.0
    base: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "tenant_id": 1,
        "credential_id": 1,
        "endpoint": "chat",
        "model": "deepseek-v3",
        "deployment_id": 1,
        "replica_id": 1,
        "node": "n1",
        "chip": "H100 SXM",
        "stream": False,
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "cached_tokens": 0,
        "status": 200,
        "outcome": "ok",
        "error_code": "",
        "latency_us": 250_000,
        "ttft_us": 40_000,
        "attempts": 1,
        "started_at": started,
        "finished_at": started + 0.25,
        "gateway": "test",
    }
    return {**base, **changes}


def usage_line(record: dict[str, Any]) -> UsageLine:
    """What rating needs of a journal record (times as the database gives them back)."""
    return UsageLine(
        request_id=record["request_id"],
        tenant_id=record["tenant_id"],
        credential_id=record["credential_id"],
        model=record.get("catalog_model") or record["model"],
        prompt_tokens=record["prompt_tokens"],
        completion_tokens=record["completion_tokens"],
        cached_tokens=record["cached_tokens"],
        status=record["status"],
        outcome=record["outcome"],
        started_at=datetime.fromtimestamp(record["started_at"], UTC),
    )


def make_source(
    seed: int, count: int, tenants: Sequence[int], start: float, span_s: float = 6 * 3600
) -> list[dict[str, Any]]:
    """``count`` records over ``tenants`` between ``start`` and ``start + span_s``.

    Mostly plain requests; some with cached tokens, some streamed, some interrupted
    streams, some failed before any output (free) and some failed after it (charged), a
    few second attempts. Request ids are derived from ``seed``: the same call gives the
    same records."""
    rng = random.Random(seed)
    names = [m for m, _ in MODELS]
    weights = [w for _, w in MODELS]
    out = []
    for i in range(count):
        at = start + span_s * i / count + rng.random() * 0.5
        prompt = rng.choice((1, 7, 64, 333, 1024, 4097, 12_345, 30_001))
        prompt += rng.randrange(50)
        completion = rng.randrange(1, 2000)
        cached = rng.randrange(prompt + 1) if rng.random() < 0.3 else 0
        stream = rng.random() < 0.4
        status, outcome = 200, "ok"
        roll = rng.random()
        if roll < 0.05:
            status, outcome, completion = rng.choice((429, 500, 502, 503)), "error", 0
        elif roll < 0.07:
            status, outcome = 502, "error"  # failed after output: still pays for it
        elif roll < 0.10 and stream:
            outcome = "interrupted"
        tenant = tenants[rng.randrange(len(tenants))]
        out.append(
            usage_record(
                request_id=f"s{seed}-{i:07d}",
                tenant_id=tenant,
                credential_id=tenant * 10 + rng.randrange(3),
                model=rng.choices(names, weights)[0],
                stream=stream,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cached_tokens=cached,
                status=status,
                outcome=outcome,
                attempts=2 if rng.random() < 0.03 else 1,
                started_at=at,
            )
        )
    return out


def batches(records: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for first in range(0, len(records), size):
        yield list(records[first : first + size])


def rate_all(engine: Engine, limit: int = 5000) -> int:
    """Rate until nothing is pending, one committed session per round; records rated."""
    factory = make_sessionmaker(engine)
    total = 0
    while True:
        with factory() as session:
            done = billing.rate_pending(session, limit=limit)
            session.commit()
        total += done.records
        if done.records == 0:
            return total


def ingest_and_rate(engine: Engine, records: Sequence[dict[str, Any]], batch: int) -> None:
    """Insert the records batch by batch, rating after each; resumes where the database is."""
    factory = make_sessionmaker(engine)
    with factory() as session:
        have = set(session.scalars(select(UsageRow.request_id)))
    for chunk in batches(records, batch):
        if all(r["request_id"] in have for r in chunk):
            continue
        insert_records(engine, chunk)
        with factory() as session:
            billing.rate_pending(session, limit=batch)
            session.commit()
    rate_all(engine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ingest and rate usage records from a file")
    parser.add_argument("url")
    parser.add_argument("source", type=Path)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args(argv)
    records = [orjson.loads(line) for line in args.source.read_bytes().splitlines() if line]
    engine = make_engine(args.url)
    try:
        with engine.connect():
            pass
        print("ready", flush=True)
        ingest_and_rate(engine, records, args.batch)
    finally:
        engine.dispose()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
