"""`suanli deploy`, `suanli deployments ...`, `suanli usage`, `suanli models ...`."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from suanli.cli.common import JsonOpt, api, console, err_console, print_json, table

deployments_app = typer.Typer(help="Model deployments: replicas of a model on engines.")
models_app = typer.Typer(help="The model catalog and the memory planner.")


def deploy(
    model: Annotated[str, typer.Argument(help="model catalog id (see `suanli models list`)")],
    name: Annotated[str | None, typer.Option(help="name clients call [default: model id]")] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="vllm, vllm-ascend, sglang, mindie, llama.cpp, cpu [default: per chip]"),
    ] = None,
    replicas: Annotated[int, typer.Option(min=0, max=256)] = 1,
    node: Annotated[str | None, typer.Option(help="pin the replicas to this node")] = None,
    chip: Annotated[str | None, typer.Option(help="only this chip model")] = None,
    accelerators: Annotated[
        int | None, typer.Option(help="per replica [default: the fewest that fit]")
    ] = None,
    precision: Annotated[str | None, typer.Option(help="bf16, fp8, int8, int4 ...")] = None,
    context_length: Annotated[int | None, typer.Option(help="tokens [default: model's]")] = None,
    model_path: Annotated[str | None, typer.Option(help="weights on the node")] = None,
    lora: Annotated[
        list[str] | None, typer.Option(help="LoRA adapter NAME=PATH (repeatable)")
    ] = None,
    routing: Annotated[
        str, typer.Option(help="round_robin, least_outstanding, prefix_cache")
    ] = "prefix_cache",
    tenant: Annotated[str | None, typer.Option(help="private to this tenant")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for a ready replica; 0: none")] = 600,
) -> None:
    """Deploy a model: its replicas start on fitting nodes; waits until one is ready."""
    adapters = []
    for item in lora or []:
        adapter, sep, path = item.partition("=")
        if not sep or not adapter or not path:
            raise typer.BadParameter("write NAME=PATH", param_hint="--lora")
        adapters.append({"name": adapter, "path": path})
    body: dict[str, Any] = {"model": model, "replicas": replicas, "routing": routing}
    optional = {
        "name": name,
        "engine": engine,
        "node": node,
        "chip": chip,
        "accelerators": accelerators,
        "precision": precision,
        "context_length": context_length,
        "model_path": model_path,
        "tenant": tenant,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if adapters:
        body["lora"] = adapters
    with api() as client:
        row = client.post("/v1/deployments", body)
        console.print(
            f"deployment [bold]{row['name']}[/bold]: {row['model']} on {row['engine']}, "
            f"{row['replicas']} replica(s)"
        )
        if wait <= 0 or replicas == 0:
            return
        row = _wait_ready(client, row["name"], wait)
    if row["ready"] == 0:
        err_console.print(f"[yellow]no replica ready after {wait:.0f} s[/yellow]")
        _explain(row)
        raise typer.Exit(1)
    console.print(f"[green]ready[/green]: {row['ready']}/{row['replicas']} replica(s)")
    console.print(f"  call it with model={row['name']!r} at <server>/v1 and a tenant API key")


def _wait_ready(client: Any, name: str, wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    with console.status("starting replicas ...") as status:
        while True:
            row: dict[str, Any] = client.get(f"/v1/deployments/{name}")
            states = ", ".join(r["state"] for r in row["replica_list"]) or "none"
            status.update(f"replicas: {states}")
            if row["ready"] > 0 or time.monotonic() > deadline:
                return row
            if row["replica_list"] and all(r["state"] == "failed" for r in row["replica_list"]):
                return row
            time.sleep(0.5)


def _explain(row: dict[str, Any]) -> None:
    for replica in row["replica_list"]:
        line = f"  replica {replica['slot']}: {replica['state']} on {replica['node'] or '-'}"
        err_console.print(line)
        if replica["last_error"]:
            err_console.print(f"    {replica['last_error'].strip()[-600:]}")
    for reason in row["pending_reasons"]:
        err_console.print(f"  {reason}")


@deployments_app.command("list")
def deployments_list(as_json: bool = JsonOpt) -> None:
    """List deployments with ready / desired replicas."""
    with api() as client:
        rows = client.get("/v1/deployments")
    if as_json:
        print_json(rows)
        return
    table(
        "deployments",
        ["name", "model", "engine", "ready", "replicas", "routing", "tenant", "state"],
        [
            [
                r["name"],
                r["model"],
                r["engine"],
                r["ready"],
                r["replicas"],
                r["routing"],
                r["tenant"] or "all",
                r["state"],
            ]
            for r in rows
        ],
    )


@deployments_app.command("show")
def deployments_show(name: str, as_json: bool = JsonOpt) -> None:
    """Show a deployment's replicas, and why any is still pending."""
    with api() as client:
        row = client.get(f"/v1/deployments/{name}")
    if as_json:
        print_json(row)
        return
    console.print(
        f"[bold]{row['name']}[/bold] {row['model']} on {row['engine']} "
        f"({row['ready']}/{row['replicas']} ready, routing {row['routing']})"
    )
    table(
        "replicas",
        ["slot", "node", "devices", "state", "desired", "endpoint", "restarts"],
        [
            [
                r["slot"],
                r["node"],
                r["devices"],
                r["state"],
                r["desired"],
                r["endpoint"],
                r["restarts"],
            ]
            for r in row["replica_list"]
        ],
    )
    _explain({**row, "replica_list": [r for r in row["replica_list"] if r["last_error"]]})


@deployments_app.command("scale")
def deployments_scale(name: str, replicas: int) -> None:
    """Change the replica count; extra replicas drain before they stop."""
    with api() as client:
        row = client.patch(f"/v1/deployments/{name}", {"replicas": replicas})
    console.print(f"{row['name']}: {row['replicas']} replica(s) wanted, {row['ready']} ready")


@deployments_app.command("delete")
def deployments_delete(name: str) -> None:
    """Drain and remove a deployment."""
    with api() as client:
        out = client.delete(f"/v1/deployments/{name}")
    console.print(f"{out['name']}: {out['state']}")


def usage(
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    model: Annotated[str | None, typer.Option(help="only this model")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    after: Annotated[int, typer.Option(min=0, help="records after this id")] = 0,
    as_json: bool = JsonOpt,
) -> None:
    """Gateway usage records: one per request, with tokens, latency and outcome."""
    params: dict[str, Any] = {"limit": limit, "after": after}
    if tenant:
        params["tenant"] = tenant
    if model:
        params["model"] = model
    with api() as client:
        rows = client.get("/v1/usage", **params)
    if as_json:
        print_json(rows)
        return
    table(
        "usage",
        [
            "id",
            "request",
            "tenant",
            "model",
            "node",
            "stream",
            "prompt",
            "completion",
            "cached",
            "status",
            "outcome",
            "ms",
        ],
        [
            [
                r["id"],
                r["request_id"][:12],
                r["tenant"],
                r["model"],
                r["node"],
                r["stream"],
                r["prompt_tokens"],
                r["completion_tokens"],
                r["cached_tokens"],
                r["status"],
                r["outcome"],
                f"{r['latency_ms']:.1f}",
            ]
            for r in rows
        ],
    )


@models_app.command("list")
def models_list(as_json: bool = JsonOpt) -> None:
    """List the catalog's models (no server needed)."""
    from suanli.models.catalog import load_models

    models = load_models().all()
    if as_json:
        print_json(
            [
                {
                    "id": m.id,
                    "kind": m.kind,
                    "params": m.params,
                    "context_length": m.context_length,
                    "engines": list(m.engines),
                }
                for m in models
            ]
        )
        return
    table(
        "models",
        ["id", "kind", "params (B)", "context", "precision", "engines", "local"],
        [
            [
                m.id,
                m.kind,
                f"{m.params_billions:.2f}",
                m.context_length,
                m.precision,
                ", ".join(m.engines),
                "yes" if m.local else "",
            ]
            for m in models
        ],
    )


@models_app.command("plan")
def models_plan(
    model: str,
    precision: Annotated[str | None, typer.Option(help="only this precision")] = None,
    context: Annotated[int | None, typer.Option(help="context tokens [default: model's]")] = None,
    all_chips: Annotated[bool, typer.Option("--all", help="also list what does not fit")] = False,
    as_json: bool = JsonOpt,
) -> None:
    """Which chips, how many, at which precision can serve MODEL (no server needed)."""
    from suanli.errors import SuanliError
    from suanli.models.catalog import load_models
    from suanli.models.memory import plan

    try:
        fits = plan(load_models().get(model), precision=precision, context_tokens=context)
    except SuanliError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    shown = [f for f in fits if f.fits or all_chips]
    if as_json:
        print_json([f.__dict__ | {"engines": list(f.engines)} for f in shown])
        return
    table(
        f"{model}: where it fits",
        ["chip", "domestic", "precision", "count", "GiB per device", "engines", "note"],
        [
            [
                f.chip_model,
                "yes" if f.domestic else "",
                f.precision,
                f.count,
                f"{f.per_device_bytes / 2**30:.1f}",
                ", ".join(f.engines),
                "" if f.fits else f.reason,
            ]
            for f in shown
        ],
    )
