"""A public production trace replayed through metering and rating: the invoice figures the
ledger gives reconcile, to the micro-unit (so to the cent), with the pure rating core.

The trace is Azure's LLM inference trace 2023 (conversation service): one row per request
with its arrival time, context tokens and generated tokens. It lives in the shared data
directory next to the repository (``../shared/data/traces/azure-llm-2023/``); without it the
test is skipped. One day of it is replayed (the whole file when it spans less). Tenants,
keys and models are assigned from a hash of the row's index; some requests have cached
prompt tokens, some are streamed, a few failed without output. Two price books are
uploaded, the second taking effect half-way through the trace, so that records on both
sides of the change are rated by the book in effect when they started.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from suanli.billing import ledger
from suanli.billing.prices import PriceBooks, parse_price_book
from suanli.billing.rating import rate_usage
from suanli.domain import money
from suanli.domain.actor import SYSTEM
from suanli.domain.specs import TenantSpec
from suanli.gateway.metering import insert_records
from suanli.services import billing, tenants
from suanli.store.tables import LedgerPostingRow, LedgerTransactionRow
from tests.services.billing_writer import batches, rate_all, usage_line, usage_record

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT.parent / "shared/data/traces/azure-llm-2023/AzureLLMInferenceTrace_conv.csv"
CNY = "CNY"
TENANTS = ("north", "south", "east", "west", "centre")
MODELS = ("deepseek-v3", "deepseek-r1", "qwen2.5-7b-instruct", "qwen2.5-72b-instruct", "other")

BOOK_A = """
version: replay-a
effective: 2023-01-01
currency: CNY
tokens:
  "*": {input: "1", output: "4"}
  deepseek-v3: {input: "2", output: "8", cached: "0.5"}
  deepseek-r1: {input: "4", output: "16", cached: "1"}
  qwen2.5-7b-instruct: {input: "0.5", output: "1"}
  qwen2.5-72b-instruct: {input: "4", output: "12"}
"""
# odd prices: most requests cost a fraction of a micro-unit more or less than a whole one
BOOK_B = """
version: replay-b
effective: {effective}
currency: CNY
tokens:
  "*": {{input: "1.111111", output: "3.333333"}}
  deepseek-v3: {{input: "1.999999", output: "7.777777", cached: "0.333333"}}
  deepseek-r1: {{input: "3.5", output: "14.285714", cached: "0.7"}}
  qwen2.5-7b-instruct: {{input: "0.45", output: "0.9", cached: "0.123457"}}
  qwen2.5-72b-instruct: {{input: "4", output: "12"}}
"""


def pick(i: int, salt: str, n: int) -> int:
    """A deterministic, well-spread choice in ``range(n)`` for row ``i``."""
    digest = hashlib.blake2b(f"{salt}:{i}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def read_day(path: Path) -> list[tuple[datetime, int, int]]:
    """(arrival, context tokens, generated tokens) of the first 24 hours of the trace."""
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stamp = row["TIMESTAMP"].strip()[:26]  # microseconds; the file has 7 digits
            at = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
            rows.append((at, int(row["ContextTokens"]), int(row["GeneratedTokens"])))
    rows.sort(key=lambda r: r[0])
    end = rows[0][0] + timedelta(days=1)
    return [r for r in rows if r[0] < end]


def to_records(rows: list[tuple[datetime, int, int]], ids: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for i, (at, context, generated) in enumerate(rows):
        tenant = ids[TENANTS[pick(i, "tenant", len(TENANTS))]]
        status, outcome, completion = 200, "ok", generated
        stream = pick(i, "stream", 10) < 3
        if pick(i, "error", 100) < 2:
            status, outcome, completion = 503, "error", 0
        elif stream and pick(i, "cut", 50) == 0:
            outcome, completion = "interrupted", generated // 2
        cached = context * pick(i, "cached", 9) // 10 if pick(i, "has-cache", 4) == 0 else 0
        out.append(
            usage_record(
                request_id=f"azure-conv-{i:06d}",
                tenant_id=tenant,
                credential_id=tenant * 100 + pick(i, "key", 3),
                model=MODELS[pick(i, "model", len(MODELS))],
                stream=stream,
                prompt_tokens=context,
                completion_tokens=completion,
                cached_tokens=cached,
                status=status,
                outcome=outcome,
                started_at=at,
            )
        )
    return out


def setup(factory: sessionmaker[Session], middle: datetime) -> tuple[dict[str, int], PriceBooks]:
    texts = [BOOK_A, BOOK_B.format(effective=middle.isoformat())]
    ids = {}
    with factory() as session:
        for text in texts:
            billing.upload_price_book(session, SYSTEM, text)
        for k, name in enumerate(TENANTS):
            row = tenants.create(session, SYSTEM, TenantSpec(name=name, country="CN"))
            row.prepaid = k % 2 == 0
            ids[name] = row.id
        session.flush()
        far = datetime.now(UTC) + timedelta(days=365)
        for k, name in enumerate(TENANTS):
            if k % 2 == 0:
                billing.top_up(session, SYSTEM, name, Decimal(100_000), CNY, f"contract-{name}")
            if k < 3:
                billing.grant_voucher(session, SYSTEM, name, Decimal(25), CNY, far)
        billing.grant_voucher(session, SYSTEM, "west", Decimal(40), CNY, far, ["deepseek-r1"])
        session.commit()
    return ids, PriceBooks(parse_price_book(t) for t in texts)


def ledger_charges(factory: sessionmaker[Session]) -> list[tuple[dict[str, Any], int]]:
    """(dims, amount) of every usage charge: its credit to revenue, as a positive amount."""
    stmt = (
        select(LedgerTransactionRow.dims, LedgerPostingRow.amount_micros)
        .join(LedgerPostingRow, LedgerPostingRow.transaction_id == LedgerTransactionRow.id)
        .where(
            LedgerTransactionRow.kind == ledger.USAGE,
            LedgerPostingRow.account == ledger.REVENUE,
        )
    )
    with factory() as session:
        return [(dims or {}, -amount) for dims, amount in session.execute(stmt).all()]


def cents(micros: int) -> Decimal:
    return money.Money.from_micros(micros, CNY).amount.quantize(Decimal("0.01"))


def test_a_day_of_azure_conversations_reconciles_to_the_cent(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    if not TRACE.is_file():
        pytest.skip(f"the Azure LLM trace is not there ({TRACE.name} in ../shared/data/traces)")
    rows = read_day(TRACE)
    assert len(rows) > 1000
    middle = rows[len(rows) // 2][0]
    ids, books = setup(session_factory, middle)
    records = to_records(rows, ids)
    for chunk in batches(records, 5000):
        insert_records(engine, chunk)
    assert rate_all(engine) == len(records)

    expected: dict[tuple[int, str], int] = defaultdict(int)
    by_key: dict[tuple[int, int], int] = defaultdict(int)
    versions: set[str] = set()
    for r in records:
        line = usage_line(r)
        book = books.at(line.started_at)
        versions.add(book.version)
        amount = rate_usage(line, book).amount_micros
        expected[(r["tenant_id"], r["model"])] += amount
        by_key[(r["tenant_id"], r["credential_id"])] += amount
    assert versions == {"replay-a", "replay-b"}

    charged: dict[tuple[int, str], int] = defaultdict(int)
    charged_by_key: dict[tuple[int, int], int] = defaultdict(int)
    parts = 0
    for dims, amount in ledger_charges(session_factory):
        charged[(dims["tenant_id"], dims["model"])] += amount
        charged_by_key[(dims["tenant_id"], dims["key"])] += amount
        parts += dims["input"] + dims["cached"] + dims["output"]
    # every line of every tenant's invoice, and the totals, to the micro-unit
    assert dict(charged) == {k: v for k, v in expected.items() if v}
    assert dict(charged_by_key) == {k: v for k, v in by_key.items() if v}
    total = sum(expected.values())
    with session_factory() as session:
        revenue = -billing.raw_balances(session, [ledger.REVENUE])[ledger.REVENUE]
        problems = billing.verify(session)
    assert revenue == total == sum(charged.values()) == parts
    for tenant in ids.values():
        mine = [v for (t, _), v in charged.items() if t == tenant]
        assert cents(sum(mine)) == cents(sum(v for (t, _), v in expected.items() if t == tenant))
    assert cents(revenue) == cents(total)
    assert problems == []
