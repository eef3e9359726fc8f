"""/v1/billing and /v1/tenants/{tenant}/billing: money in, money owed, invoices, margin."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import Field

from suanli.api.deps import Admin, Caller, DbSession, read_text, require_tenant_access
from suanli.billing import ledger
from suanli.domain.specs import Amount as MoneyAmount
from suanli.domain.specs import Label, Spec
from suanli.services import billing, billing_reports, tenants
from suanli.store.tables import PriceBookRow

router = APIRouter(tags=["billing"])
Amount = Annotated[MoneyAmount, Field(gt=0)]  # a decimal string; floats are refused


class TopUpSpec(Spec):
    amount: Amount
    currency: str = Field(min_length=3, max_length=3)
    external_id: str = Field(min_length=1, max_length=100, description="the payment's reference")


class VoucherSpec(Spec):
    amount: Amount
    currency: str = Field(min_length=3, max_length=3)
    expires_at: datetime
    products: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=100, description="model ids it pays for [default: any]"
    )
    memo: Label = ""


class BillingModeSpec(Spec):
    prepaid: bool
    credit_limit: Amount | Literal[0] = 0


def _money(micros: int, currency: str) -> str:
    return f"{Decimal(micros) / Decimal(1_000_000):.6f}".rstrip("0").rstrip(".")


def _balance(session: DbSession, tenant: str) -> dict[str, Any]:
    trow = tenants.get(session, tenant)
    currency = billing.price_books(session).at(datetime.now(UTC)).currency
    funds = billing.funds_of(session, [trow.id], currency)[trow.id]
    now = datetime.now(UTC)
    return {
        "tenant": trow.name,
        "currency": currency,
        "prepaid": trow.prepaid,
        "credit_limit": _money(trow.credit_limit_micros, currency),
        "balance": _money(funds.prepaid_micros, currency),
        "vouchers": [
            {
                "id": v.voucher_id,
                "remaining": _money(v.remaining_micros, currency),
                "expires_at": v.expires_at,
                "products": sorted(v.products) if v.products is not None else None,
                "usable": v.remaining_micros > 0 and (v.expires_at is None or v.expires_at > now),
            }
            for v in funds.vouchers
        ],
    }


@router.get("/v1/tenants/{tenant}/balance")
def get_balance(tenant: str, session: DbSession, caller: Caller) -> dict[str, Any]:
    require_tenant_access(caller, tenants.get(session, tenant).id)
    return _balance(session, tenant)


@router.post("/v1/tenants/{tenant}/top-ups", status_code=status.HTTP_201_CREATED)
def top_up(tenant: str, spec: TopUpSpec, session: DbSession, admin: Admin) -> dict[str, Any]:
    billing.top_up(session, admin, tenant, spec.amount, spec.currency, spec.external_id)
    session.commit()
    return _balance(session, tenant)


@router.post("/v1/tenants/{tenant}/vouchers", status_code=status.HTTP_201_CREATED)
def grant_voucher(
    tenant: str, spec: VoucherSpec, session: DbSession, admin: Admin
) -> dict[str, Any]:
    billing.grant_voucher(
        session,
        admin,
        tenant,
        spec.amount,
        spec.currency,
        spec.expires_at,
        spec.products,
        spec.memo,
    )
    session.commit()
    return _balance(session, tenant)


@router.put("/v1/tenants/{tenant}/billing-mode")
def set_billing_mode(
    tenant: str, spec: BillingModeSpec, session: DbSession, admin: Admin
) -> dict[str, Any]:
    """Prepaid tenants are refused at the gateway when their funds run out."""
    trow = tenants.get(session, tenant)
    trow.prepaid = spec.prepaid
    trow.credit_limit_micros = int(Decimal(spec.credit_limit) * 1_000_000)
    session.commit()
    return _balance(session, tenant)


@router.get("/v1/tenants/{tenant}/invoices/{month}", response_model=None)
def get_invoice(
    tenant: str,
    month: str,
    session: DbSession,
    caller: Caller,
    format: Annotated[Literal["json", "csv", "html", "pdf"], Query()] = "json",
) -> Any:
    require_tenant_access(caller, tenants.get(session, tenant).id)
    inv = billing_reports.invoice(session, tenant, month)
    if format == "csv":
        return Response(billing_reports.invoice_csv(inv), media_type="text/csv")
    if format == "html":
        return Response(billing_reports.invoice_html(inv), media_type="text/html")
    if format == "pdf":
        return Response(billing_reports.invoice_pdf(inv), media_type="application/pdf")
    return inv.to_json()


@router.post("/v1/billing/price-books", status_code=status.HTTP_201_CREATED)
async def upload_price_book(request: Request, admin: Admin) -> dict[str, Any]:
    """Upload a price book (YAML, the request body) as a new version."""
    text = await read_text(request, 1_000_000, "price book")
    factory = request.app.state.sessionmaker
    with factory() as session:
        row = billing.upload_price_book(session, admin, text)
        session.commit()
        return {"version": row.version, "effective_at": row.effective_at, "currency": row.currency}


@router.get("/v1/billing/price-books")
def list_price_books(session: DbSession, _caller: Caller) -> list[dict[str, Any]]:
    from sqlalchemy import select

    rows = session.scalars(select(PriceBookRow).order_by(PriceBookRow.effective_at))
    return [
        {"version": r.version, "effective_at": r.effective_at, "currency": r.currency} for r in rows
    ]


@router.post("/v1/billing/rate")
def rate_now(session: DbSession, _admin: Admin, retry_quarantined: bool = False) -> dict[str, int]:
    """Rate every usage record not rated yet (the platform also does this every second).

    Records rating refuses (no price book in effect at their time, no price for their
    model) are set aside with the reason instead of blocking the others;
    ``retry_quarantined`` first puts them back in line (after the prices were fixed)."""
    requeued = billing.retry_quarantined(session) if retry_quarantined else 0
    session.commit()
    records = charged = amount = refused = 0
    while True:
        done = billing.rate_pending(session)
        session.commit()
        records, charged, amount = (
            records + done.records,
            charged + done.charged,
            amount + done.amount_micros,
        )
        refused += done.quarantined
        if done.records == 0:
            held, _ = billing.quarantined(session, limit=0)
            return {
                "records": records,
                "charged": charged,
                "amount_micros": amount,
                "quarantined": refused,
                "requeued": requeued,
                "quarantined_total": held,
            }


@router.get("/v1/billing/quarantine")
def quarantine(session: DbSession, _admin: Admin, limit: int = 100) -> dict[str, Any]:
    """Usage records rating set aside, with the reason, oldest first."""
    count, rows = billing.quarantined(session, limit=max(0, min(limit, 1000)))
    return {
        "count": count,
        "records": [
            {
                "request_id": r.request_id,
                "tenant_id": r.tenant_id,
                "model": r.model,
                "started_at": r.started_at,
                "reason": r.rating_error,
            }
            for r in rows
        ],
    }


@router.get("/v1/billing/verify")
def verify(session: DbSession, _admin: Admin) -> dict[str, Any]:
    problems = billing.verify(session)
    return {"ok": not problems, "problems": problems[:1000], "count": len(problems)}


@router.get("/v1/billing/margin", response_model=None)
def get_margin(
    session: DbSession,
    _admin: Admin,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$")],
    format: Annotated[Literal["json", "png"], Query()] = "json",
    view: Annotated[Literal["data_center", "chip", "model", "tenant"], Query()] = "data_center",
) -> Any:
    start, end = billing_reports.month_bounds(month)
    report = billing_reports.margin(session, start, end)
    if format == "png":
        return Response(billing_reports.margin_png(report, view), media_type="image/png")
    return report


@router.get("/v1/billing/operators/{data_center}/statement")
def operator_statement(
    data_center: str,
    session: DbSession,
    _admin: Admin,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$")],
) -> dict[str, Any]:
    """What the platform owes one data center's operator for a month, and in total."""
    start, end = billing_reports.month_bounds(month)
    report = billing_reports.margin(session, start, end)
    row = next((r for r in report["data_center"] if r["data_center"] == data_center), None)
    owed = billing.raw_balances(session, [ledger.payable_account(data_center)])
    total = -owed.get(ledger.payable_account(data_center), 0)
    return {
        "data_center": data_center,
        "month": month,
        "currency": report["currency"],
        "cost_this_month": row["cost"] if row else "0",
        "payable_total": _money(total, report["currency"]),
    }
