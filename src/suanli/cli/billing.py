"""`suanli billing ...` and `suanli ledger verify`: money in, money owed, invoices, margin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.cli.common import JsonOpt, api, console, err_console, print_json, table

billing_app = typer.Typer(help="Top-ups, vouchers, balances, invoices, price books, margin.")
ledger_app = typer.Typer(help="The double-entry ledger behind every amount.")


@billing_app.command("top-up")
def top_up(
    tenant: str,
    amount: Annotated[str, typer.Argument(help='decimal, e.g. "100.00"')],
    currency: Annotated[str, typer.Option(help="ISO 4217 code")] = "CNY",
    ref: Annotated[str, typer.Option(help="the payment's reference (makes it idempotent)")] = "",
) -> None:
    """Record money a tenant paid in (the same --ref twice is recorded once)."""
    if not ref:
        raise typer.BadParameter("give the payment's reference", param_hint="--ref")
    with api() as client:
        out = client.post(
            f"/v1/tenants/{tenant}/top-ups",
            {"amount": amount, "currency": currency, "external_id": ref},
        )
    console.print(f"{tenant}: balance {out['balance']} {out['currency']}")


@billing_app.command("voucher")
def voucher(
    tenant: str,
    amount: str,
    expires: Annotated[str, typer.Option(help="ISO date or datetime, e.g. 2027-06-30")],
    currency: str = "CNY",
    product: Annotated[
        list[str] | None, typer.Option(help="only for this model (repeatable)")
    ] = None,
    memo: str = "",
) -> None:
    """Grant a voucher: spent before cash, until it expires."""
    body: dict[str, Any] = {"amount": amount, "currency": currency, "expires_at": expires}
    if product:
        body["products"] = product
    if memo:
        body["memo"] = memo
    with api() as client:
        out = client.post(f"/v1/tenants/{tenant}/vouchers", body)
    console.print(f"{tenant}: {len(out['vouchers'])} voucher(s); balance {out['balance']}")


@billing_app.command("balance")
def balance(tenant: str, as_json: bool = JsonOpt) -> None:
    """A tenant's prepaid balance and vouchers."""
    with api() as client:
        out = client.get(f"/v1/tenants/{tenant}/balance")
    if as_json:
        print_json(out)
        return
    mode = "prepaid" if out["prepaid"] else "postpaid"
    console.print(f"[bold]{tenant}[/bold] ({mode}): {out['balance']} {out['currency']}")
    if out["vouchers"]:
        table(
            "vouchers",
            ["id", "remaining", "expires", "products", "usable"],
            [
                [
                    v["id"],
                    v["remaining"],
                    str(v["expires_at"])[:19],
                    ",".join(v["products"] or []) or "any",
                    v["usable"],
                ]
                for v in out["vouchers"]
            ],
        )


@billing_app.command("mode")
def mode(
    tenant: str,
    prepaid: Annotated[bool, typer.Option("--prepaid/--postpaid")] = True,
    credit_limit: Annotated[str, typer.Option(help="how far below 0 it may go")] = "0",
) -> None:
    """Prepaid tenants are refused (429 insufficient_quota) when their funds run out."""
    with api() as client:
        client.request(
            "PUT",
            f"/v1/tenants/{tenant}/billing-mode",
            json={"prepaid": prepaid, "credit_limit": credit_limit},
        )
    console.print(f"{tenant}: {'prepaid' if prepaid else 'postpaid'}")


@billing_app.command("invoice")
def invoice(
    tenant: str,
    month: Annotated[str, typer.Argument(help="YYYY-MM")],
    format: Annotated[str, typer.Option(help="table, json, csv, html, pdf")] = "table",
    output: Annotated[Path | None, typer.Option("-o", help="write to this file")] = None,
) -> None:
    """A tenant's monthly invoice."""
    if format not in ("table", "json", "csv", "html", "pdf"):
        raise typer.BadParameter("table, json, csv, html or pdf", param_hint="--format")
    with api() as client:
        if format in ("csv", "html", "pdf"):
            raw = client.raw(
                "GET", f"/v1/tenants/{tenant}/invoices/{month}", params={"format": format}
            )
            if output is None and format == "pdf":
                raise typer.BadParameter("a PDF needs -o FILE", param_hint="-o")
            if output is not None:
                output.write_bytes(raw.content)
                console.print(f"wrote {output}")
            else:
                typer.echo(raw.text)
            return
        out = client.get(f"/v1/tenants/{tenant}/invoices/{month}")
    if format == "json" or output is not None:
        if output is not None:
            import json

            output.write_text(json.dumps(out, indent=2))
            console.print(f"wrote {output}")
        else:
            print_json(out)
        return
    table(
        f"invoice {tenant} {month} ({out['currency']})",
        ["model", "requests", "prompt", "cached", "completion", "amount"],
        [
            [
                ln["model"],
                ln["requests"],
                ln["prompt_tokens"],
                ln["cached_tokens"],
                ln["completion_tokens"],
                ln["amount"],
            ]
            for ln in out["lines"]
        ]
        + [[k, "", "", "", "", v] for k, v in out["other"].items()]
        + [["total", "", "", "", "", out["total"]]],
    )


@billing_app.command("rate")
def rate(
    retry_quarantined: Annotated[
        bool,
        typer.Option(help="first put records set aside back in line (after fixing prices)"),
    ] = False,
) -> None:
    """Rate all usage not rated yet (the platform also does it every second).

    A record that cannot be rated (no price book in effect at its time, no price for its
    model) is set aside with the reason, not left blocking the rest: `suanli billing
    quarantined` lists them; upload a price book that covers them, then run this with
    --retry-quarantined."""
    with api() as client:
        path = "/v1/billing/rate" + ("?retry_quarantined=true" if retry_quarantined else "")
        out = client.post(path)
    console.print(f"rated {out['records']} record(s), {out['charged']} charge(s)")
    if out["requeued"]:
        console.print(f"{out['requeued']} record(s) set aside before were tried again")
    if out["quarantined_total"]:
        console.print(
            f"[yellow]{out['quarantined_total']} record(s) set aside[/yellow] "
            "(suanli billing quarantined)"
        )


@billing_app.command("quarantined")
def quarantined(
    limit: Annotated[int, typer.Option(help="records to show")] = 50,
    as_json: bool = JsonOpt,
) -> None:
    """Usage records rating set aside, with the reason."""
    with api() as client:
        out = client.get(f"/v1/billing/quarantine?limit={limit}")
    if as_json:
        print_json(out)
        return
    table(
        f"{out['count']} usage record(s) set aside",
        ["request", "tenant", "model", "started", "reason"],
        [
            [r["request_id"], r["tenant_id"], r["model"], r["started_at"], r["reason"]]
            for r in out["records"]
        ],
    )


@billing_app.command("margin")
def margin(
    month: Annotated[str, typer.Argument(help="YYYY-MM")],
    view: Annotated[str, typer.Option(help="data_center, chip, model, tenant")] = "data_center",
    plot: Annotated[Path | None, typer.Option(help="write the chart (PNG) here")] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Revenue, operator cost and margin for a month."""
    with api() as client:
        out = client.get("/v1/billing/margin", month=month)
        if plot is not None:
            raw = client.raw(
                "GET",
                "/v1/billing/margin",
                params={"month": month, "format": "png", "view": view},
            )
            plot.write_bytes(raw.content)
    if as_json:
        print_json(out)
        return
    if view not in ("data_center", "chip", "model", "tenant"):
        raise typer.BadParameter("data_center, chip, model or tenant", param_hint="--view")
    table(
        f"margin {month} by {view} ({out['currency']})",
        [view, "revenue", "cost", "margin"],
        [[r[view], r["revenue"], r["cost"], r["margin"]] for r in out[view]],
    )
    if plot is not None:
        console.print(f"chart: {plot}")


@billing_app.command("price-book")
def price_book(
    file: Annotated[Path | None, typer.Argument(help="YAML to upload as a new version")] = None,
) -> None:
    """List price book versions, or upload FILE as a new one."""
    with api() as client:
        if file is not None:
            out = client.request(
                "POST",
                "/v1/billing/price-books",
                content=file.read_bytes(),
                headers={"content-type": "application/yaml"},
            )
            console.print(f"price book {out['version']} effective {out['effective_at']}")
            return
        rows = client.get("/v1/billing/price-books")
    table(
        "price books",
        ["version", "effective", "currency"],
        [[r["version"], r["effective_at"], r["currency"]] for r in rows]
        or [["(packaged example)", "", ""]],
    )


@ledger_app.command("verify")
def verify() -> None:
    """Check the ledger's invariants; exit 1 when any fails."""
    with api() as client:
        out = client.get("/v1/billing/verify")
    if out["ok"]:
        console.print(
            "[green]ledger verified[/green]: balanced, balances match postings, "
            "no prepaid below its limit, each usage record charged once"
        )
        return
    for problem in out["problems"]:
        err_console.print(f"  {problem}")
    err_console.print(f"[red]{out['count']} problem(s)[/red]")
    raise typer.Exit(1)
