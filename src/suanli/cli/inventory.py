"""`suanli dc ...` and `suanli nodes ...`."""

from __future__ import annotations

from typing import Annotated

import typer

from suanli.cli.common import JsonOpt, OverrideOpt, api, console, print_json, table

dc_app = typer.Typer(help="Data centers and what their operators charge per accelerator-hour.")
nodes_app = typer.Typer(help="Nodes, their accelerators and lifecycle.")


def _parse_cost(text: str) -> dict[str, str]:
    """'Ascend 910B=9.80 CNY' -> {chip, per_accelerator_hour, currency}."""
    chip, sep, price = text.partition("=")
    parts = price.split()
    if not sep or not chip.strip() or len(parts) not in (1, 2):
        raise typer.BadParameter(f"{text!r}: write CHIP=AMOUNT [CURRENCY], e.g. 'H20=6.5 CNY'")
    cost = {"chip": chip.strip(), "per_accelerator_hour": parts[0]}
    if len(parts) == 2:
        cost["currency"] = parts[1]
    return cost


@dc_app.command("list")
def dc_list(as_json: bool = JsonOpt) -> None:
    """List data centers with node and accelerator counts."""
    with api() as client:
        rows = client.get("/v1/data-centers")
    if as_json:
        print_json(rows)
        return
    table(
        "data centers",
        ["name", "country", "region", "city", "owner", "operator", "nodes", "accelerators"],
        [
            [
                r["name"],
                r["country"],
                r["region"],
                r["city"],
                r["owner_type"],
                r["operator"],
                r["nodes"],
                r["accelerators"],
            ]
            for r in rows
        ],
    )


@dc_app.command("show")
def dc_show(name: str, as_json: bool = JsonOpt) -> None:
    """Show one data center and its costs per accelerator-hour."""
    with api() as client:
        row = client.get(f"/v1/data-centers/{name}")
    if as_json:
        print_json(row)
        return
    console.print(
        f"[bold]{row['name']}[/bold]  {row['country']} {row['region']} {row['city']}  "
        f"owner={row['owner_type']} operator={row['operator']!r}  "
        f"nodes={row['nodes']} accelerators={row['accelerators']}"
    )
    table(
        "operator cost per accelerator-hour",
        ["chip", "amount", "currency"],
        [[c["chip"], c["per_accelerator_hour"], c["currency"]] for c in row["costs"]],
    )


@dc_app.command("create")
def dc_create(
    name: str,
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 code, e.g. CN")],
    owner_type: Annotated[str, typer.Option(help="state or private")],
    region: str = "",
    city: str = "",
    operator: str = "",
    cost: Annotated[
        list[str] | None, typer.Option(help="CHIP=AMOUNT [CURRENCY], repeatable")
    ] = None,
) -> None:
    """Create a data center."""
    body = {
        "name": name,
        "country": country,
        "owner_type": owner_type,
        "region": region,
        "city": city,
        "operator": operator,
        "costs": [_parse_cost(c) for c in cost or []],
    }
    with api() as client:
        row = client.post("/v1/data-centers", body)
    console.print(f"created data center [bold]{row['name']}[/bold]")


@dc_app.command("delete")
def dc_delete(name: str) -> None:
    """Delete an empty data center."""
    with api() as client:
        client.delete(f"/v1/data-centers/{name}")
    console.print(f"deleted data center {name}")


@nodes_app.command("list")
def nodes_list(
    data_center: Annotated[str | None, typer.Option("--dc", help="only this data center")] = None,
    state: str | None = None,
    chip: str | None = None,
    limit: int = 1000,
    as_json: bool = JsonOpt,
) -> None:
    """List nodes (one page of up to --limit)."""
    with api() as client:
        page = client.get("/v1/nodes", data_center=data_center, state=state, chip=chip, limit=limit)
    if as_json:
        print_json(page)
        return
    table(
        f"nodes ({len(page['nodes'])}{'+' if page['next_after'] else ''})",
        ["name", "data center", "chip", "count", "island", "state", "reason", "heartbeat"],
        [
            [
                n["name"],
                n["data_center"],
                n["chip"] or "cpu",
                n["count"],
                n["island"],
                n["state"],
                n["state_reason"],
                (n["last_heartbeat_at"] or "")[:19],
            ]
            for n in page["nodes"]
        ],
    )


@nodes_app.command("show")
def nodes_show(name: str, as_json: bool = JsonOpt) -> None:
    """Show a node with its accelerators."""
    with api() as client:
        node = client.get(f"/v1/nodes/{name}")
    if as_json:
        print_json(node)
        return
    console.print(
        f"[bold]{node['name']}[/bold] in {node['data_center']}: {node['count']} x "
        f"{node['chip'] or 'no accelerator'}, state [bold]{node['state']}[/bold] "
        f"({node['state_reason']}), detector={node['detector'] or '-'}, "
        f"host={node['hostname'] or '-'}"
    )
    table(
        "accelerators",
        ["index", "chip", "memory MB", "health", "temp C", "util %", "ECC", "uuid"],
        [
            [
                a["index"],
                a["chip"],
                a["memory_mb"],
                a["health"],
                a["temperature_c"],
                a["utilization_pct"],
                a["ecc_errors"],
                a["uuid"],
            ]
            for a in node["accelerators"] or []
        ],
    )


@nodes_app.command("set-state")
def nodes_set_state(
    name: str,
    state: str,
    reason: Annotated[str, typer.Option(help="why (kept in the node's history)")],
) -> None:
    """Move a node through its lifecycle (only legal transitions are accepted)."""
    with api() as client:
        node = client.post(f"/v1/nodes/{name}/state", {"state": state, "reason": reason})
    console.print(f"{name}: {node['previous_state']} -> [bold]{node['state']}[/bold]")


@nodes_app.command("events")
def nodes_events(name: str, as_json: bool = JsonOpt) -> None:
    """A node's lifecycle history, newest first."""
    with api() as client:
        rows = client.get(f"/v1/nodes/{name}/events")
    if as_json:
        print_json(rows)
        return
    table(
        f"events of {name}",
        ["at", "from", "to", "reason", "by"],
        [[e["at"][:19], e["from_state"], e["to_state"], e["reason"], e["actor"]] for e in rows],
    )


@nodes_app.command("create")
def nodes_create(
    name: str,
    data_center: Annotated[str, typer.Option("--dc", help="data center")],
    chip: Annotated[str | None, typer.Option(help="catalog chip name")] = None,
    count: Annotated[int, typer.Option(min=0, help="accelerators")] = 0,
    island: str = "",
    state: Annotated[str, typer.Option(help="registered, qualifying or ready")] = "registered",
    override_reason: Annotated[str | None, OverrideOpt] = None,
) -> None:
    """Add one node (a fleet file adds many)."""
    body = {
        "name": name,
        "data_center": data_center,
        "chip": chip,
        "count": count,
        "island": island,
        "state": state,
    }
    params = {"override_reason": override_reason} if override_reason else None
    with api() as client:
        node = client.post("/v1/nodes", body, params=params)
    console.print(f"created node {node['name']}: {node['count']} x {node['chip'] or 'cpu'}")


@nodes_app.command("delete")
def nodes_delete(name: str, override_reason: Annotated[str | None, OverrideOpt] = None) -> None:
    """Remove a node from the inventory."""
    params = {"override_reason": override_reason} if override_reason else None
    with api() as client:
        client.request("DELETE", f"/v1/nodes/{name}", params=params)
    console.print(f"deleted node {name}")
