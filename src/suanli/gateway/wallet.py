"""Prepaid tenants' funds at the gateway: a request starts only if its worst case is covered.

What a tenant may still spend = what the ledger says (prepaid down to its credit limit,
plus the vouchers that pay for the model) minus usage recorded but not rated yet minus usage this
process journaled but the database may not show yet minus the worst case of its requests in
flight here. A request reserves its worst case (prompt estimate at the input price plus
``max_tokens`` at the output price) before it is forwarded and gives back the difference
when it ends, so a burst of concurrent requests cannot overdraw: each must fit beside the
others' reservations. The ledger is read at most every ``ttl_s`` per tenant.

Within one gateway process this is exact up to the admission estimate; several gateway
processes each hold their own reservations, so together they may overdraw by at most one
burst per process (shared reservations would need Redis, as the rate limits do).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from suanli.billing.funds import Funds, spendable
from suanli.billing.prices import PriceBook, PriceBooks
from suanli.billing.rating import UsageLine, rate_usage
from suanli.services import billing
from suanli.store.tables import TenantRow, UsageRow

REFRESH_BOOKS_S = 30.0


@dataclass
class _Snapshot:
    funds: Funds
    credit_limit: int
    unrated: int  # cost of usage in the database not rated yet, when read
    read_at: float  # monotonic, when the read began


@dataclass
class _Tenant:
    snapshot: _Snapshot | None = None
    expires: float = 0.0
    reserved: int = 0
    journaled: deque[tuple[float, int]] = field(default_factory=deque)  # (when, cost)


class Wallets:
    def __init__(
        self, factory: sessionmaker[Session], ttl_s: float = 1.0, flush_s: float = 0.2
    ) -> None:
        self.factory = factory
        self.ttl_s = ttl_s
        self.lag_s = flush_s + 1.0  # how long a journaled record may stay out of the database
        self._tenants: dict[int, _Tenant] = defaultdict(_Tenant)
        self._books: PriceBooks | None = None
        self._books_at = 0.0

    # --- prices --------------------------------------------------------------------------

    async def book(self) -> PriceBook:
        now = time.monotonic()
        if self._books is None or now - self._books_at > REFRESH_BOOKS_S:
            loop = asyncio.get_running_loop()
            self._books = await loop.run_in_executor(None, self._load_books)
            self._books_at = now
        return self._books.at(datetime.now(UTC))

    def _load_books(self) -> PriceBooks:
        with self.factory() as session:
            return billing.price_books(session)

    @staticmethod
    def cost(book: PriceBook, model: str, prompt: int, completion: int, cached: int = 0) -> int:
        line = UsageLine(
            "-", 0, 0, model, prompt, completion, min(cached, prompt), 200, "ok", datetime.now(UTC)
        )
        return rate_usage(line, book).amount_micros

    # --- funds ---------------------------------------------------------------------------

    def _read(self, tenant_id: int, book: PriceBook) -> _Snapshot:
        started = time.monotonic()
        with self.factory() as session:
            funds = billing.funds_of(session, [tenant_id], book.currency)[tenant_id]
            limit = session.scalar(
                select(TenantRow.credit_limit_micros).where(TenantRow.id == tenant_id)
            )
            unrated = 0
            for called, model, prompt, completion, cached in session.execute(
                select(
                    UsageRow.model,
                    UsageRow.catalog_model,
                    UsageRow.prompt_tokens,
                    UsageRow.completion_tokens,
                    UsageRow.cached_tokens,
                ).where(UsageRow.tenant_id == tenant_id, UsageRow.rated_at.is_(None))
            ):
                unrated += self.cost(book, model or called, prompt, completion, cached)
        return _Snapshot(funds, int(limit or 0), unrated, started)

    async def _snapshot(self, tenant_id: int, book: PriceBook) -> _Snapshot:
        state = self._tenants[tenant_id]
        now = time.monotonic()
        if state.snapshot is None or now >= state.expires:
            loop = asyncio.get_running_loop()
            state.snapshot = await loop.run_in_executor(None, self._read, tenant_id, book)
            state.expires = now + self.ttl_s
        return state.snapshot

    async def available(self, tenant_id: int, model: str) -> int:
        book = await self.book()
        snap = await self._snapshot(tenant_id, book)
        state = self._tenants[tenant_id]
        horizon = snap.read_at - self.lag_s
        while state.journaled and state.journaled[0][0] < horizon:
            state.journaled.popleft()  # surely in the database (rated or not) by that read
        recent = sum(cost for _when, cost in state.journaled)
        base = spendable(snap.funds, model, datetime.now(UTC), snap.credit_limit)
        return base - snap.unrated - recent - state.reserved

    async def reserve(self, tenant_id: int, model: str, worst_case: int) -> bool:
        """Hold ``worst_case`` for a request if the tenant can afford it now."""
        if await self.available(tenant_id, model) < worst_case:
            return False
        self._tenants[tenant_id].reserved += worst_case
        return True

    def settle(self, tenant_id: int, reserved: int, actual: int) -> None:
        """The request ended: drop its reservation, remember what it cost until the
        database shows it."""
        state = self._tenants[tenant_id]
        state.reserved -= reserved
        if actual:
            state.journaled.append((time.monotonic(), actual))
