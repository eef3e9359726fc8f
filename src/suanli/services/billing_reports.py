"""What billing tells people: invoices, operator statements, the margin report; and the
per-minute accrual of accelerator time (what operators are owed, what dedicated capacity
and rentals cost their tenants).

Every figure here is read back from the ledger, so an invoice is exactly what was posted.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.billing import ledger
from suanli.billing.prices import PriceNotFoundError
from suanli.billing.rating import operator_cost, rate_accelerator_time
from suanli.domain import money
from suanli.errors import ValidationError
from suanli.services import holdings, tenants
from suanli.services.billing import price_books
from suanli.services.ledger_store import post
from suanli.store.tables import (
    ChipCostRow,
    DataCenterRow,
    DeploymentRow,
    LedgerPostingRow,
    LedgerTransactionRow,
    NodeRow,
    ReplicaRow,
    WorkloadRow,
)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``"2026-11"`` -> [start, end) in UTC."""
    try:
        year, mon = (int(p) for p in month.split("-"))
        start = datetime(year, mon, 1, tzinfo=UTC)
    except ValueError:
        raise ValidationError(f"month must look like 2026-11, not {month!r}", "month") from None
    days = calendar.monthrange(year, mon)[1]
    return start, start + timedelta(days=days)


def _fmt(micros: int, currency: str) -> str:
    return f"{money.Money.from_micros(micros, currency).amount:.2f}"


# --- invoices ----------------------------------------------------------------------------


@dataclass
class InvoiceLine:
    model: str
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    amount_micros: int = 0


@dataclass
class Invoice:
    tenant: str
    month: str
    currency: str
    lines: list[InvoiceLine]
    by_key: dict[int, int]
    by_day: dict[str, int]
    other: dict[str, int]  # rentals, dedicated capacity
    paid_by_vouchers: int
    paid_by_prepaid: int
    top_ups: int
    total_micros: int = field(init=False)

    def __post_init__(self) -> None:
        self.total_micros = sum(line.amount_micros for line in self.lines) + sum(
            self.other.values()
        )

    def to_json(self) -> dict[str, Any]:
        cur = self.currency
        return {
            "tenant": self.tenant,
            "month": self.month,
            "currency": cur,
            "total": _fmt(self.total_micros, cur),
            "total_micros": self.total_micros,
            "lines": [
                {
                    "model": ln.model,
                    "requests": ln.requests,
                    "prompt_tokens": ln.prompt_tokens,
                    "cached_tokens": ln.cached_tokens,
                    "completion_tokens": ln.completion_tokens,
                    "amount": _fmt(ln.amount_micros, cur),
                    "amount_micros": ln.amount_micros,
                }
                for ln in self.lines
            ],
            "other": {k: _fmt(v, cur) for k, v in sorted(self.other.items())},
            "by_key": {str(k): _fmt(v, cur) for k, v in sorted(self.by_key.items())},
            "by_day": {k: _fmt(v, cur) for k, v in sorted(self.by_day.items())},
            "paid_by_vouchers": _fmt(self.paid_by_vouchers, cur),
            "paid_by_prepaid": _fmt(self.paid_by_prepaid, cur),
            "top_ups": _fmt(self.top_ups, cur),
        }


def invoice(session: Session, tenant: str, month: str) -> Invoice:
    trow = tenants.get(session, tenant)
    start, end = month_bounds(month)
    prepaid = ledger.prepaid_account(trow.id)
    vprefix = f"tenant:{trow.id}:voucher:"
    stmt = (
        select(
            LedgerTransactionRow.kind,
            LedgerTransactionRow.at,
            LedgerTransactionRow.dims,
            LedgerPostingRow.account,
            LedgerPostingRow.amount_micros,
        )
        .join(LedgerPostingRow, LedgerPostingRow.transaction_id == LedgerTransactionRow.id)
        .where(
            LedgerTransactionRow.at >= start,
            LedgerTransactionRow.at < end,
            (LedgerPostingRow.account == prepaid) | LedgerPostingRow.account.startswith(vprefix),
        )
    )
    lines: dict[str, InvoiceLine] = {}
    by_key: dict[int, int] = defaultdict(int)
    by_day: dict[str, int] = defaultdict(int)
    other: dict[str, int] = defaultdict(int)
    vouchers = prepaid_paid = top_ups = 0
    counted: set[tuple[Any, ...]] = set()
    for kind, at, dims, account, amount in session.execute(stmt):
        dims = dims or {}
        if kind == "top_up":
            top_ups += -amount
            continue
        if amount <= 0:  # voucher grants and expiries are not spending
            continue
        if account == prepaid:
            prepaid_paid += amount
        else:
            vouchers += amount
        day = at.astimezone(UTC).date().isoformat()
        by_day[day] += amount
        if kind == ledger.USAGE:
            model = str(dims.get("model", "?"))
            line = lines.setdefault(model, InvoiceLine(model))
            line.amount_micros += amount
            by_key[int(dims.get("key", 0))] += amount
            request = (at, dims.get("key"), dims.get("input"), dims.get("output"), model)
            if (request, "tokens") not in counted:  # a request paid from two sources
                counted.add((request, "tokens"))
            else:
                continue
            line.requests += 1
            line.prompt_tokens += int(dims.get("prompt_tokens", 0))
            line.cached_tokens += int(dims.get("cached_tokens", 0))
            line.completion_tokens += int(dims.get("completion_tokens", 0))
        else:
            other[str(dims.get("label", kind))] += amount
    currency = price_books(session).at(end - timedelta(seconds=1)).currency
    return Invoice(
        trow.name,
        month,
        currency,
        sorted(lines.values(), key=lambda ln: -ln.amount_micros),
        dict(by_key),
        dict(by_day),
        dict(other),
        vouchers,
        prepaid_paid,
        top_ups,
    )


def invoice_csv(inv: Invoice) -> str:
    rows = ["model,requests,prompt_tokens,cached_tokens,completion_tokens,amount,currency"]
    for ln in inv.lines:
        rows.append(
            f"{ln.model},{ln.requests},{ln.prompt_tokens},{ln.cached_tokens},"
            f"{ln.completion_tokens},{_fmt(ln.amount_micros, inv.currency)},{inv.currency}"
        )
    for label, amount in sorted(inv.other.items()):
        rows.append(f"{label},,,,,{_fmt(amount, inv.currency)},{inv.currency}")
    rows.append(f"TOTAL,,,,,{_fmt(inv.total_micros, inv.currency)},{inv.currency}")
    return "\n".join(rows) + "\n"


def invoice_html(inv: Invoice) -> str:
    from html import escape

    cur = inv.currency
    body = "".join(
        f"<tr><td>{escape(ln.model)}</td><td>{ln.requests:,}</td><td>{ln.prompt_tokens:,}</td>"
        f"<td>{ln.cached_tokens:,}</td><td>{ln.completion_tokens:,}</td>"
        f"<td class=n>{_fmt(ln.amount_micros, cur)}</td></tr>"
        for ln in inv.lines
    ) + "".join(
        f"<tr><td>{escape(k)}</td><td></td><td></td><td></td><td></td>"
        f"<td class=n>{_fmt(v, cur)}</td></tr>"
        for k, v in sorted(inv.other.items())
    )
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Invoice {escape(inv.tenant)} {inv.month}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}}.n{{text-align:right}}</style></head><body>
<h1>Invoice — {escape(inv.tenant)} — {inv.month}</h1>
<table><tr><th>model</th><th>requests</th><th>prompt tokens</th><th>cached tokens</th>
<th>completion tokens</th><th>amount ({cur})</th></tr>{body}
<tr><th colspan=5>total</th><th class=n>{_fmt(inv.total_micros, cur)}</th></tr></table>
<p>Paid from vouchers {_fmt(inv.paid_by_vouchers, cur)} {cur}; from the prepaid balance
{_fmt(inv.paid_by_prepaid, cur)} {cur}. Top-ups received this month:
{_fmt(inv.top_ups, cur)} {cur}.</p></body></html>
"""


def invoice_pdf(inv: Invoice) -> bytes:
    """One A4 page: the invoice's table, rendered by matplotlib (no other PDF library)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    cur = inv.currency
    cells = [
        [
            ln.model,
            f"{ln.requests:,}",
            f"{ln.prompt_tokens:,}",
            f"{ln.cached_tokens:,}",
            f"{ln.completion_tokens:,}",
            _fmt(ln.amount_micros, cur),
        ]
        for ln in inv.lines[:40]
    ] + [[k, "", "", "", "", _fmt(v, cur)] for k, v in sorted(inv.other.items())]
    cells.append(["total", "", "", "", "", _fmt(inv.total_micros, cur)])
    fig = plt.figure(figsize=(8.27, 11.69))
    fig.text(0.08, 0.95, f"Invoice — {inv.tenant} — {inv.month}", fontsize=16)
    fig.text(
        0.08,
        0.92,
        f"Amounts in {cur}. Vouchers {_fmt(inv.paid_by_vouchers, cur)}, prepaid "
        f"{_fmt(inv.paid_by_prepaid, cur)}, top-ups {_fmt(inv.top_ups, cur)}.",
        fontsize=9,
    )
    ax = fig.add_axes((0.05, 0.1, 0.9, 0.78))
    ax.axis("off")
    table = ax.table(
        cellText=cells,
        colLabels=["model", "requests", "prompt", "cached", "completion", "amount"],
        loc="upper center",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    out = io.BytesIO()
    fig.savefig(out, format="pdf")
    plt.close(fig)
    return out.getvalue()


# --- margin and operator statements ------------------------------------------------------


def _node_places(session: Session) -> dict[str, tuple[str, str]]:
    rows = session.execute(
        select(NodeRow.name, DataCenterRow.name, NodeRow.chip).join(
            DataCenterRow, NodeRow.data_center_id == DataCenterRow.id
        )
    )
    return {node: (dc, chip or "CPU") for node, dc, chip in rows}


def margin(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    """Revenue, cost and margin by data center, chip, model and tenant over [start, end)."""
    places = _node_places(session)
    names = {t.id: t.name for t in tenants.list_all(session)}  # small table: read once
    views: dict[str, dict[str, dict[str, int]]] = {
        v: defaultdict(lambda: {"revenue": 0, "cost": 0})
        for v in ("data_center", "chip", "model", "tenant")
    }
    stmt = (
        select(LedgerTransactionRow.dims, LedgerPostingRow.account, LedgerPostingRow.amount_micros)
        .join(LedgerPostingRow, LedgerPostingRow.transaction_id == LedgerTransactionRow.id)
        .where(
            LedgerTransactionRow.at >= start,
            LedgerTransactionRow.at < end,
            LedgerPostingRow.account.in_([ledger.REVENUE, ledger.COST_OF_REVENUE]),
        )
    )
    for dims, account, amount in session.execute(stmt):
        dims = dims or {}
        node = str(dims.get("node") or "")
        dc, chip = places.get(node, (str(dims.get("data_center") or "external"), ""))
        chip = str(dims.get("chip") or chip or "-")
        keys = {
            "data_center": dc,
            "chip": chip,
            "model": str(dims.get("model") or "(accelerator time)"),
            "tenant": names.get(int(dims.get("tenant_id") or 0), "(platform)"),
        }
        column = "revenue" if account == ledger.REVENUE else "cost"
        value = -amount if column == "revenue" else amount
        for view, key in keys.items():
            views[view][key][column] += value
    currency = price_books(session).at(end - timedelta(seconds=1)).currency
    out: dict[str, Any] = {"currency": currency, "from": start.isoformat(), "to": end.isoformat()}
    for view, table in views.items():
        out[view] = [
            {
                view: key,
                "revenue": _fmt(v["revenue"], currency),
                "cost": _fmt(v["cost"], currency),
                "margin": _fmt(v["revenue"] - v["cost"], currency),
                "revenue_micros": v["revenue"],
                "cost_micros": v["cost"],
            }
            for key, v in sorted(table.items(), key=lambda kv: -kv[1]["revenue"])
        ]
    return out


def margin_png(report: dict[str, Any], view: str = "data_center") -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = report[view][:20]
    labels = [r[view] for r in rows]
    revenue = [r["revenue_micros"] / 1e6 for r in rows]
    cost = [r["cost_micros"] / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], revenue, 0.4, label="revenue")
    ax.bar([x + 0.2 for x in xs], cost, 0.4, label="operator cost")
    ax.plot(list(xs), [r - c for r, c in zip(revenue, cost, strict=True)], "k.", label="margin")
    ax.set_xticks(list(xs), labels, rotation=20, ha="right")
    ax.set_ylabel(report["currency"])
    ax.set_title(f"Revenue, cost and margin by {view.replace('_', ' ')}")
    ax.legend()
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)
    return out.getvalue()


# --- accruing accelerator time -----------------------------------------------------------


def accrue_minute(session: Session, minute: datetime) -> int:
    """Post one whole minute of accelerator time for what holds accelerators now: the
    operator's cost for every replica and rental (cost of revenue / payable to the data
    center), and the tenant's price for tenant-owned deployments and rentals. Idempotent:
    each minute of each holder has its own external id. Returns transactions posted."""
    minute = minute.replace(second=0, microsecond=0)
    stamp = minute.strftime("%Y%m%dT%H%M")
    books = price_books(session)
    book = books.at(minute)
    costs = {
        (dc, chip): micros
        for dc, chip, micros in session.execute(
            select(DataCenterRow.name, ChipCostRow.chip, ChipCostRow.amount_micros).join(
                ChipCostRow, ChipCostRow.data_center_id == DataCenterRow.id
            )
        )
    }
    places = _node_places(session)
    holders: list[tuple[str, str, int, int | None, str]] = []  # id, node, count, tenant, label
    for rid, node, devices, tenant_id, dep in session.execute(
        select(
            ReplicaRow.id,
            NodeRow.name,
            ReplicaRow.devices,
            DeploymentRow.tenant_id,
            DeploymentRow.name,
        )
        .join(NodeRow, ReplicaRow.node_id == NodeRow.id)
        .join(DeploymentRow, ReplicaRow.deployment_id == DeploymentRow.id)
        .where(ReplicaRow.state.in_(("starting", "ready", "draining", "backoff")))
    ):
        if devices:
            holders.append((f"replica:{rid}", node, len(devices), tenant_id, f"dedicated {dep}"))
    node_names = dict(session.execute(select(NodeRow.id, NodeRow.name)).all())
    for w in session.scalars(select(WorkloadRow).where(WorkloadRow.state == "running")):
        # one holder per node of the placement; the first keeps the pre-scheduler id
        for i, slot in enumerate(holdings.slots_of(w)):
            holder = f"workload:{w.id}" if i == 0 else f"workload:{w.id}@{slot.node_id}"
            node = node_names.get(slot.node_id, "")
            holders.append((holder, node, slot.count, w.tenant_id, f"rental {w.name}"))
    txs: list[ledger.Transaction] = []
    dims: list[dict[str, Any] | None] = []
    for holder, node, count, tenant_id, label in holders:
        dc, chip = places.get(node, ("", "CPU"))
        per_hour = costs.get((dc, chip))
        if per_hour:
            amount = operator_cost(per_hour, 60 * count)
            if amount:
                txs.append(ledger.cost(dc, amount, book.currency, f"cost:{holder}:{stamp}", minute))
                dims.append({"data_center": dc, "chip": chip, "node": node, "label": label})
        if tenant_id is None:
            continue
        try:
            price = rate_accelerator_time(chip, 60 * count, book)
        except PriceNotFoundError:
            continue
        if price:
            tx = _time_charge(tenant_id, price, book.currency, f"time:{holder}:{stamp}", minute)
            txs.append(tx)
            dims.append(
                {
                    "tenant_id": tenant_id,
                    "data_center": dc,
                    "chip": chip,
                    "node": node,
                    "label": label,
                }
            )
    return post(session, txs, dims)


def _time_charge(
    tenant_id: int, amount: int, currency: str, external_id: str, at: datetime
) -> ledger.Transaction:
    """Accelerator time a tenant holds: debit its prepaid balance, credit revenue."""
    postings = (
        ledger.Posting(ledger.prepaid_account(tenant_id), amount, currency),
        ledger.Posting(ledger.REVENUE, -amount, currency),
    )
    return ledger.Transaction(external_id, "accelerator_time", postings, at).validate()
