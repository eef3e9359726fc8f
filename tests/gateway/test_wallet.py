"""Prepaid tenants at the gateway: refused when broke, and a burst cannot overdraw.

The fake replicas answer with 17 prompt and 3 completion tokens; the model is priced with
the packaged example price book's "*" default unless a price book is uploaded here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

import httpx
import openai
import pytest
from sqlalchemy import select

from suanli.domain.actor import SYSTEM
from suanli.services import billing
from suanli.store.tables import TenantRow
from tests.gateway.conftest import Served

BOOK = """\
version: "test-1"
effective: 2020-01-01
currency: CNY
tokens:
  "*": {input: "1000", output: "1000"}
"""  # 1000 CNY per million tokens: 1,000 micro-units (0.001 CNY) a token


def _prepaid(gw: Served, top_up: str | None) -> None:
    with gw.world.sessions.begin() as session:
        billing.upload_price_book(session, SYSTEM, BOOK)
        tenant = session.scalar(select(TenantRow).where(TenantRow.name == "acme"))
        assert tenant is not None
        tenant.prepaid = True
        if top_up is not None:
            billing.top_up(session, SYSTEM, "acme", Decimal(top_up), "CNY", "pay-1")


CHAT = [{"role": "user", "content": "hello there"}]


def test_a_broke_prepaid_tenant_gets_insufficient_quota(serve: Callable[..., Served]) -> None:
    gw = serve()
    _prepaid(gw, None)
    with pytest.raises(openai.RateLimitError) as refused:
        gw.client().chat.completions.create(model="m", messages=CHAT, max_tokens=5)
    assert refused.value.status_code == 429
    body = refused.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["code"]) == ("insufficient_quota", "insufficient_quota")
    assert gw.fakes[0].received == []  # nothing reached the replica
    (row,) = gw.records(1)
    assert (row.status, row.error_code) == (429, "insufficient_quota")


def test_a_funded_tenant_is_served_until_the_money_runs_out(
    serve: Callable[..., Served],
) -> None:
    gw = serve()
    # 0.15 CNY = 150 tokens at this price. A request's worst case: its prompt's bytes (16)
    # plus the template allowance (64 + 16 per message) plus max_tokens 5 = 101 tokens; its
    # real cost is 17 + 3 = 20 tokens. 150, 130, 110 cover it; 90 does not.
    _prepaid(gw, "0.15")
    client = gw.client()
    served = refused = 0
    for _ in range(6):
        try:
            client.chat.completions.create(model="m", messages=CHAT, max_tokens=5)
            served += 1
        except openai.RateLimitError:
            refused += 1
        gw.gateway.journal.flush()
        with gw.world.sessions.begin() as session:
            billing.rate_pending(session)
    assert served == 3
    assert refused == 3
    with gw.world.sessions() as session:
        tenant_id = session.scalar(select(TenantRow.id).where(TenantRow.name == "acme"))
        assert tenant_id is not None
        funds = billing.funds_of(session, [tenant_id], "CNY")[tenant_id]
        assert funds.prepaid_micros == 150_000 - 3 * 20_000  # never below zero
        assert billing.verify(session) == []


def test_a_burst_cannot_overdraw(serve: Callable[..., Served]) -> None:
    gw = serve()
    _prepaid(gw, "0.3")  # 300 tokens; worst case per request 16 + 64 + 16 + 20 = 116
    for fake in gw.fakes:
        fake.default = replace(fake.default, delay=0.3)  # all of them in flight at once

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
            body = {"model": "m", "messages": CHAT, "max_tokens": 20}
            headers = {"authorization": f"Bearer {gw.world.key}"}
            answers = await asyncio.gather(
                *(
                    client.post("/v1/chat/completions", json=body, headers=headers)
                    for _ in range(10)
                )
            )
            return [a.status_code for a in answers]

    statuses = asyncio.run(burst())
    # 300 tokens of money hold 2 worst cases of 116 at once; the other 8 are refused
    assert statuses.count(200) == 2
    assert statuses.count(429) == 8
