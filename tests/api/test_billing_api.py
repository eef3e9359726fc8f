"""Billing through the API: top-ups, vouchers, rating, invoices in four formats, margin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from suanli.gateway.metering import insert_records
from tests.conftest import Api

BOOK = """\
version: "2026-11"
effective: 2026-01-01
currency: CNY
tokens:
  "*": {input: "2", output: "8", cached: "0.5"}
  qwen2.5-7b-instruct: {input: "0.5", output: "1"}
accelerators:
  H100 SXM: {per_hour: "18", spot_discount: "0.4"}
"""


def _usage(
    i: int,
    tenant_id: int,
    model: str,
    prompt: int,
    out: int,
    cached: int = 0,
    at: datetime = datetime(2026, 11, 3, 12, 0, tzinfo=UTC),
) -> dict:
    t = at.timestamp() + i
    return {
        "request_id": f"req-{i}",
        "tenant_id": tenant_id,
        "credential_id": 7,
        "endpoint": "chat",
        "model": model,
        "catalog_model": model,
        "deployment_id": None,
        "replica_id": None,
        "node": "",
        "chip": "",
        "stream": i % 2 == 0,
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "cached_tokens": cached,
        "status": 200,
        "outcome": "ok",
        "error_code": "",
        "latency_us": 1000,
        "ttft_us": 500,
        "attempts": 1,
        "started_at": t,
        "finished_at": t + 1,
        "gateway": "test",
    }


def _tenant(api: Api) -> int:
    assert api.client.post("/v1/tenants", json={"name": "acme", "country": "CN"}).status_code == 201
    with api.sessions() as session:
        from sqlalchemy import select

        from suanli.store.tables import TenantRow

        tid = session.scalar(select(TenantRow.id).where(TenantRow.name == "acme"))
        assert tid is not None
        return tid


def test_money_in_usage_rated_invoice_out(api: Api) -> None:
    c = api.client
    r = c.post("/v1/billing/price-books", content=BOOK, headers={"content-type": "text/yaml"})
    assert r.status_code == 201, r.text
    tid = _tenant(api)
    r = c.post(
        "/v1/tenants/acme/top-ups",
        json={"amount": "10.00", "currency": "CNY", "external_id": "bank-1"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["balance"] == "10"
    again = c.post(
        "/v1/tenants/acme/top-ups",
        json={"amount": "10.00", "currency": "CNY", "external_id": "bank-1"},
    )
    assert again.json()["balance"] == "10"  # the same payment, recorded once
    expires = (datetime.now(UTC) + timedelta(days=60)).isoformat()
    r = c.post(
        "/v1/tenants/acme/vouchers",
        json={"amount": "1", "currency": "CNY", "expires_at": expires, "products": ["deepseek-v3"]},
    )
    assert r.status_code == 201, r.text

    insert_records(
        api.sessions.kw["bind"],
        [
            _usage(1, tid, "qwen2.5-7b-instruct", 1_000_000, 1_000_000),  # 0.5 + 1 = 1.5
            _usage(2, tid, "deepseek-v3", 500_000, 100_000, cached=250_000),
            # 250k x 2/M + 250k x 0.5/M + 100k x 8/M = 0.5 + 0.125 + 0.8 = 1.425
            _usage(3, tid, "deepseek-v3", 0, 0),  # free
        ],
    )
    rated = c.post("/v1/billing/rate").json()
    assert rated == {
        "records": 3,
        "charged": 2,
        "amount_micros": 2_925_000,
        "quarantined": 0,
        "requeued": 0,
        "quarantined_total": 0,
    }
    assert c.post("/v1/billing/rate").json()["records"] == 0  # rated once
    # a record from before any price book is set aside, listed, and blocks nothing
    insert_records(
        api.sessions.kw["bind"],
        [_usage(4, tid, "deepseek-v3", 1000, 10, at=datetime(2001, 1, 1, tzinfo=UTC))],
    )
    held = c.post("/v1/billing/rate").json()
    assert (held["records"], held["quarantined"], held["quarantined_total"]) == (1, 1, 1)
    listed = c.get("/v1/billing/quarantine").json()
    assert listed["count"] == 1
    assert "no price book is in effect" in listed["records"][0]["reason"]
    again = c.post("/v1/billing/rate?retry_quarantined=true").json()
    assert (again["requeued"], again["quarantined_total"]) == (1, 1)  # still no book for 2001

    balance = c.get("/v1/tenants/acme/balance").json()
    # the voucher pays 1 of deepseek's 1.425 (it covers only deepseek); prepaid the rest
    assert balance["balance"] == "8.075"
    assert balance["vouchers"][0]["remaining"] == "0"

    inv = c.get("/v1/tenants/acme/invoices/2026-11").json()
    assert inv["total"] == "2.92"  # 2.925 shown to the cent (half-even)
    assert inv["total_micros"] == 2_925_000
    assert {ln["model"]: ln["amount_micros"] for ln in inv["lines"]} == {
        "qwen2.5-7b-instruct": 1_500_000,
        "deepseek-v3": 1_425_000,
    }
    deepseek = next(ln for ln in inv["lines"] if ln["model"] == "deepseek-v3")
    assert (deepseek["requests"], deepseek["cached_tokens"]) == (1, 250_000)
    assert inv["paid_by_vouchers"] == "1.00"
    assert inv["top_ups"] == "10.00"
    csv = c.get("/v1/tenants/acme/invoices/2026-11", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.strip().splitlines()[-1] == "TOTAL,,,,,2.92,CNY"
    html = c.get("/v1/tenants/acme/invoices/2026-11", params={"format": "html"})
    assert "deepseek-v3" in html.text
    pdf = c.get("/v1/tenants/acme/invoices/2026-11", params={"format": "pdf"})
    assert pdf.content.startswith(b"%PDF")

    assert c.get("/v1/billing/verify").json() == {"ok": True, "problems": [], "count": 0}
    margin = c.get("/v1/billing/margin", params={"month": "2026-11"}).json()
    assert sum(r["revenue_micros"] for r in margin["model"]) == 2_925_000
    png = c.get("/v1/billing/margin", params={"month": "2026-11", "format": "png"})
    assert png.content.startswith(b"\x89PNG")


def test_bad_input_names_the_field(api: Api) -> None:
    c = api.client
    _tenant(api)
    r = c.post(
        "/v1/tenants/acme/top-ups", json={"amount": 1.5, "currency": "CNY", "external_id": "x"}
    )
    assert r.status_code == 422
    r = c.post(
        "/v1/tenants/acme/top-ups", json={"amount": "5", "currency": "USD", "external_id": "x"}
    )
    assert r.status_code == 422
    assert "CNY" in r.json()["error"]["message"]
    bad = BOOK.replace('input: "2"', "input: 2.5")
    r = c.post("/v1/billing/price-books", content=bad, headers={"content-type": "text/yaml"})
    assert r.status_code == 422
    assert "line" in r.json()["error"]["message"]
    assert c.get("/v1/tenants/acme/invoices/2026-13").status_code == 422


def test_tenant_keys_see_only_their_own(api: Api) -> None:
    c = api.client
    _tenant(api)
    assert c.post("/v1/tenants", json={"name": "other", "country": "CN"}).status_code == 201
    key = c.post("/v1/tenants/acme/api-keys", json={"name": "k"}).json()["secret"]
    headers = {"authorization": f"Bearer {key}"}
    assert api.anon.get("/v1/tenants/acme/balance", headers=headers).status_code == 200
    assert api.anon.get("/v1/tenants/other/balance", headers=headers).status_code == 403
    top = api.anon.post(
        "/v1/tenants/acme/top-ups",
        json={"amount": "5", "currency": "CNY", "external_id": "self"},
        headers=headers,
    )
    assert top.status_code == 403  # a tenant cannot credit itself
