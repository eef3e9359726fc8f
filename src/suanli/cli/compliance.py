"""`suanli compliance`, `suanli datasets`, `suanli workloads`, `suanli artifacts`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.cli.common import JsonOpt, api, console, print_json, table

compliance_app = typer.Typer(help="Compliance: rule sets, dry-run evaluation, the report.")
datasets_app = typer.Typer(help="Tenant datasets, each bound to the country it must stay in.")
workloads_app = typer.Typer(
    help="Workloads: submitted, placed by the scheduler under the compliance rules, explained."
)
artifacts_app = typer.Typer(help="What workloads produced, with residency and lineage.")


def _decisions(rows: list[dict[str, Any]]) -> None:
    table(
        "decisions",
        ["rule", "kind", "allowed", "why"],
        [[d["rule"], d["kind"], "yes" if d["allowed"] else "NO", d["sentence"]] for d in rows],
    )


@compliance_app.command("report")
def report(
    since: Annotated[str | None, typer.Option(help="ISO date/time [30 days ago]")] = None,
    until: Annotated[str | None, typer.Option(help="ISO date/time [now]")] = None,
    csv: Annotated[bool, typer.Option("--csv", help="print CSV (one row per data center)")] = False,
    plot: Annotated[Path | None, typer.Option(help="write a PNG chart of the shares here")] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Domestic shares (count, compute, cost), usage share, bound artifacts, refusals."""
    params = {"since": since, "until": until}
    with api() as client:
        if csv:
            typer.echo(client.get("/v1/compliance/report", **params, format="csv"), nl=False)
            return
        body = client.get("/v1/compliance/report", **params)
    if as_json:
        print_json(body)
        return

    def pct(view: dict[str, Any]) -> str:
        return f"{float(view['share']):.1%}" if view["share"] is not None else f"? ({view['note']})"

    fleet = body["fleet"]
    console.print(
        f"rule set [bold]{body['rule_set']}[/bold]; period {body['period']['since'][:19]} .. "
        f"{body['period']['until'][:19]}; fleet: {fleet['domestic_accelerators']} of "
        f"{fleet['accelerators']} accelerators domestic, usage share "
        f"{_opt_pct(fleet['usage_share'])}"
    )
    table(
        "domestic share by data center",
        [
            "data center",
            "country",
            "owner",
            "accel.",
            "by count",
            "by compute",
            "by cost",
            "usage",
            "domestic idle",
            "rules",
        ],
        [
            [
                d["data_center"],
                d["country"],
                d["owner_type"],
                d["accelerators"],
                pct(d["shares"]["count"]),
                pct(d["shares"]["compute"]),
                pct(d["shares"]["cost"]),
                _opt_pct(d["usage_share"]),
                d["domestic_idle_now"],
                ", ".join(f"{r['rule']}: {r['status']}" for r in d["rules"]),
            ]
            for d in body["data_centers"]
        ],
    )
    if body["residency_bound_artifacts"]:
        table(
            "residency-bound artifacts",
            ["tenant", "artifact", "kind", "may be in", "because of"],
            [
                [
                    a["tenant"],
                    a["artifact"],
                    a["kind"],
                    "/".join(a["countries"]) or "nowhere",
                    ", ".join(a["derived_from"]),
                ]
                for a in body["residency_bound_artifacts"]
            ],
        )
    refusals = body["refusals"]
    console.print(
        f"refusals in period: {sum(refusals['by_rule'].values())} "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(refusals['by_rule'].items())) or 'none'}); "
        f"overrides: {refusals['overrides']}"
    )
    if plot is not None:
        from suanli.cli.plots import share_chart

        share_chart(body, plot)
        console.print(f"chart written to {plot}")


def _opt_pct(value: str | None) -> str:
    return "-" if value is None else f"{float(value):.1%}"


@compliance_app.command("rules")
def rules(
    apply: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="upload this YAML rule set")
    ] = None,
    history: Annotated[bool, typer.Option(help="list uploaded rule sets")] = False,
) -> None:
    """Show the rule set in force (default), upload a new one, or list the history."""
    with api() as client:
        if apply is not None:
            row = client.post(
                "/v1/policy/rules",
                None,
                content=apply.read_bytes(),
                headers={"content-type": "application/yaml"},
            )
            console.print(
                f"rule set {row['version']} stored; in force from {row['effective_from']}"
            )
        elif history:
            rows = client.get("/v1/policy/rules/history")
            table(
                "rule sets",
                ["version", "effective from", "source"],
                [[r["version"], r["effective_from"], r["source"]] for r in rows],
            )
        else:
            row = client.get("/v1/policy/rules")
            console.print(
                f"# version {row['version']}, in force since {row['effective_from']} "
                f"({row['source']})"
            )
            typer.echo(row["text"])


@compliance_app.command("evaluate")
def evaluate(
    tenant: Annotated[str, typer.Option()],
    accelerators: Annotated[int, typer.Option(min=1)] = 1,
    kind: str = "training",
    dataset: Annotated[list[str] | None, typer.Option(help="dataset it reads (repeatable)")] = None,
    artifact: Annotated[
        list[str] | None, typer.Option(help="artifact it reads (repeatable)")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Dry run: where may this workload run, and why not elsewhere."""
    body = {
        "tenant": tenant,
        "accelerators": accelerators,
        "kind": kind,
        "datasets": dataset or [],
        "artifacts": artifact or [],
    }
    with api() as client:
        rows = client.post("/v1/policy/evaluate", body)
    if as_json:
        print_json(rows)
        return
    table(
        f"where may {tenant}'s {kind} on {accelerators} accelerators run",
        ["data center", "country", "chip", "allowed", "why"],
        [
            [
                r["data_center"],
                r["country"],
                r["chip"],
                "yes" if r["allowed"] else "NO",
                r["sentence"],
            ]
            for r in rows
        ],
    )


@datasets_app.command("create")
def datasets_create(
    tenant: str,
    name: str,
    country: Annotated[str, typer.Option(help="ISO code it must stay in")],
    description: str = "",
) -> None:
    """Register a dataset and the country it must stay in."""
    with api() as client:
        client.post(
            f"/v1/tenants/{tenant}/datasets",
            {"name": name, "country": country, "description": description},
        )
    console.print(f"dataset {tenant}/{name} bound to {country.upper()}")


@datasets_app.command("list")
def datasets_list(tenant: str, as_json: bool = JsonOpt) -> None:
    """List a tenant's datasets."""
    with api() as client:
        rows = client.get(f"/v1/tenants/{tenant}/datasets")
    if as_json:
        print_json(rows)
        return
    table(
        f"datasets of {tenant}",
        ["name", "country", "description"],
        [[r["name"], r["country"], r["description"]] for r in rows],
    )


@workloads_app.command("submit")
def workloads_submit(
    tenant: str,
    name: str,
    accelerators: Annotated[int, typer.Option(min=1, help="how many accelerators")] = 1,
    kind: Annotated[
        str, typer.Option(help="training, fine_tune, inference, compression or rental")
    ] = "training",
    node: Annotated[
        str | None, typer.Option(help="place it on this node now [the scheduler chooses]")
    ] = None,
    chip: Annotated[
        list[str] | None, typer.Option(help="accept this chip model (repeatable) [any]")
    ] = None,
    stack: Annotated[
        list[str] | None, typer.Option(help="accept chips on this software stack (repeatable)")
    ] = None,
    min_memory_gb: Annotated[
        float | None, typer.Option(help="accept chips with at least this much memory")
    ] = None,
    topology: Annotated[
        str, typer.Option(help="a gang stays in one: node, island, data_center, any")
    ] = "node",
    replicas: Annotated[
        bool, typer.Option("--replicas", help="independent devices, not one gang")
    ] = False,
    spot: Annotated[bool, typer.Option("--spot", help="cheap work high priority may stop")] = False,
    model: Annotated[
        str | None, typer.Option(help="model it runs (memory fit and chip ranking)")
    ] = None,
    precision: Annotated[str, typer.Option(help="bf16, fp16, fp8, int8, int4 ...")] = "bf16",
    dataset: Annotated[list[str] | None, typer.Option(help="dataset it reads (repeatable)")] = None,
    artifact: Annotated[
        list[str] | None, typer.Option(help="artifact it reads (repeatable)")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Submit a workload. Without --node it waits pending until the scheduler places it
    (see `suanli workloads list` and `why`); with --node it is placed there now, or refused
    with the rule where compliance forbids it."""
    body: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "accelerators": accelerators,
        "chips": chip or [],
        "stacks": stack or [],
        "min_memory_gb": min_memory_gb,
        "gang": not replicas,
        "topology": topology,
        "priority": "spot" if spot else "high",
        "model_id": model,
        "precision": precision,
        "datasets": dataset or [],
        "artifacts": artifact or [],
    }
    if node is not None:
        body["node"] = node
    with api() as client:
        row = client.post(f"/v1/tenants/{tenant}/workloads", body)
    if as_json:
        print_json(row)
        return
    if row["state"] == "pending":
        console.print(
            f"workload {tenant}/{name} pending: the scheduler will place it "
            f"(suanli workloads why {tenant} {name})"
        )
        return
    console.print(
        f"workload {tenant}/{name} running on {', '.join(row['nodes'])} "
        f"({row['accelerators']} x {row['chip']})"
    )
    _decisions(row["decisions"] or [])


@workloads_app.command("list")
def workloads_list(
    tenant: str,
    state: Annotated[
        str | None,
        typer.Option(help="only pending, running, finished, cancelled or preempted ones"),
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """List a tenant's workloads: state, the node(s) and chip they run on, or why they wait."""
    with api() as client:
        rows = client.get(f"/v1/tenants/{tenant}/workloads", state=state)
    if as_json:
        print_json(rows)
        return
    table(
        f"workloads of {tenant}",
        ["name", "kind", "state", "count", "chip", "nodes", "inputs", "residency", "waiting"],
        [
            [
                w["name"],
                w["kind"],
                w["state"] + (" (spot)" if w["request"]["priority"] == "spot" else ""),
                w["accelerators"],
                w["chip"] or "-",
                ", ".join(w["nodes"]) or "-",
                ", ".join(w["inputs"]),
                "/".join(w["residency"]) if w["residency"] is not None else "-",
                w["waiting_because"] or "",
            ]
            for w in rows
        ],
    )


@workloads_app.command("cancel")
def workloads_cancel(tenant: str, name: str) -> None:
    """Cancel pending or running work; running work frees its accelerators."""
    with api() as client:
        row = client.post(f"/v1/tenants/{tenant}/workloads/{name}/cancel")
    console.print(f"workload {tenant}/{name} {row['state']}")


@workloads_app.command("why")
def workloads_why(tenant: str, name: str, as_json: bool = JsonOpt) -> None:
    """Why a workload waits: each filter, the nodes it removed and why, grouped; or where
    it runs and the score it was chosen on."""
    with api() as client:
        body = client.get(f"/v1/tenants/{tenant}/workloads/{name}/why")
    if as_json:
        print_json(body)
        return
    if body["state"] not in ("pending", "running"):  # the explanation is of its last placement
        typer.echo(f"{tenant}/{name} is {body['state']}; it was placed as follows")
    typer.echo(body["text"])


@workloads_app.command("finish")
def workloads_finish(
    tenant: str,
    name: str,
    output: Annotated[
        list[str] | None, typer.Option(help="NAME=KIND it produced (repeatable)")
    ] = None,
) -> None:
    """End a workload; its outputs become artifacts that inherit its residency."""
    outputs = []
    for item in output or []:
        out_name, sep, out_kind = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: write NAME=KIND, e.g. my-lora=adapter")
        outputs.append({"name": out_name, "kind": out_kind})
    with api() as client:
        made = client.post(f"/v1/tenants/{tenant}/workloads/{name}/finish", {"outputs": outputs})
    described = [
        f"{a['name']} ({'/'.join(a['residency']) if a['residency'] is not None else 'unbound'})"
        for a in made
    ]
    console.print(f"finished {tenant}/{name}; artifacts: {', '.join(described) or 'none'}")


@artifacts_app.command("list")
def artifacts_list(tenant: str, as_json: bool = JsonOpt) -> None:
    """List a tenant's artifacts and where they may be."""
    with api() as client:
        rows = client.get(f"/v1/tenants/{tenant}/artifacts")
    if as_json:
        print_json(rows)
        return
    table(
        f"artifacts of {tenant}",
        ["name", "kind", "may be in", "because of"],
        [
            [
                a["name"],
                a["kind"],
                "/".join(a["residency"]) if a["residency"] is not None else "anywhere",
                ", ".join(a["residency_sources"]),
            ]
            for a in rows
        ],
    )


@artifacts_app.command("export")
def artifacts_export(
    tenant: str, name: str, to: Annotated[str, typer.Option(help="destination country")]
) -> None:
    """Check that an artifact may move to a country (refused with the rule if not)."""
    with api() as client:
        client.post(f"/v1/tenants/{tenant}/artifacts/{name}/export", {"destination_country": to})
    console.print(f"{tenant}/{name} may go to {to.upper()}")
