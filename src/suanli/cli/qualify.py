"""`suanli qualify` (run the acceptance suite here) and `suanli qualifications ...`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from suanli.cli.common import (
    JsonOpt,
    ThresholdsOpt,
    api,
    console,
    err_console,
    print_json,
    table,
)

qualifications_app = typer.Typer(help="Stored qualification runs of nodes: list, show, compare.")


def _detected_chip() -> str | None:
    from suanli.agent.detect import detect_host
    from suanli.catalog.chips import load_catalog

    for device in detect_host().devices:
        chip = load_catalog().find(device.name)
        if chip is not None:
            return chip.model
    return None


def qualify(
    level: Annotated[
        str, typer.Option(help="quick (seconds), standard (~2 min), long (~15 min)")
    ] = "standard",
    backend: Annotated[str, typer.Option(help="auto, numpy, cuda or npu")] = "auto",
    cpu_devices: Annotated[
        int, typer.Option(min=1, max=64, help="logical devices on the CPU backend")
    ] = 1,
    chip: Annotated[
        str | None, typer.Option(help="catalog chip to judge against [detected]")
    ] = None,
    inject: Annotated[
        list[str] | None,
        typer.Option(
            help="inject a fault (repeatable): slow:DEV[:FRACTION], bitflip:DEV[:COUNT], "
            "decay[:FRACTION[:DEV]]"
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="directory for the JSON and HTML reports")] = Path("."),
    time_scale: Annotated[
        float, typer.Option(envvar="SUANLI_QUALIFY_TIME_SCALE", min=0.001, max=10)
    ] = 1.0,
    thresholds: Annotated[Path | None, ThresholdsOpt] = None,
    upload: Annotated[
        str | None, typer.Option(help="report the run as this node's (needs SUANLI_TOKEN)")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """Run the acceptance suite on this machine; write JSON and HTML reports."""
    from suanli.catalog.chips import load_catalog
    from suanli.errors import ValidationError
    from suanli.qualify.backends import make_backend
    from suanli.qualify.faults import FaultyBackend, parse_fault
    from suanli.qualify.html import render_html
    from suanli.qualify.model import Level
    from suanli.qualify.runner import run_suite
    from suanli.qualify.thresholds import load_thresholds

    if level not in ("quick", "standard", "long"):
        raise typer.BadParameter("quick, standard or long", param_hint="--level")
    try:
        spec = load_catalog().get(chip, field="chip") if chip else None
        if spec is None and not chip:
            detected = _detected_chip()
            spec = load_catalog().get(detected) if detected else None
        suite_backend = make_backend(backend, cpu_devices)  # type: ignore[arg-type]
        if inject:
            suite_backend = FaultyBackend(suite_backend, [parse_fault(f) for f in inject])
        with Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=as_json,
        ) as bar:
            task = bar.add_task(f"{level} on {suite_backend.name}", total=None)

            def progress(test: str, done: int, total: int) -> None:
                bar.update(task, description=test, completed=done, total=total)

            report = run_suite(
                suite_backend,
                cast(Level, level),
                spec,
                load_thresholds(thresholds),
                time_scale=time_scale,
                progress=progress,
            )
    except ValidationError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    json_path = out / f"qualification-{level}-{stamp}.json"
    html_path = json_path.with_suffix(".html")
    json_path.write_text(json.dumps(report.to_json(), indent=2))
    html_path.write_text(render_html(report))
    if as_json:
        print_json(report.to_json())
    else:
        _print_report(report.to_json())
        console.print(f"reports: {json_path} and {html_path}")
    if upload:
        with api() as client:
            run = client.post(
                f"/v1/nodes/{upload}/qualifications",
                {"kind": "acceptance", "report": report.to_json()},
            )
        console.print(f"stored as run {run['id']}; node {upload} is now {run['node_state']}")
    if not report.passed:
        raise typer.Exit(1)


def _print_report(data: dict[str, Any]) -> None:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    rows = [
        [
            m["test"],
            m["device"] or "",
            m["metric"],
            num(m["value"]),
            m["unit"],
            num(m["threshold"]),
            m["rule"],
            {"passed": "ok", "failed": "FAIL", "skipped": "skip"}[m["status"]],
            m["detail"],
        ]
        for m in data["measurements"]
    ]
    table(
        f"{data['level']} qualification on {data['backend']} (chip: {data['chip'] or 'none'})",
        [
            "test",
            "device",
            "metric",
            "measured",
            "unit",
            "threshold",
            "pass rule",
            "result",
            "detail",
        ],
        rows,
    )


@qualifications_app.command("list")
def runs_list(node: str, as_json: bool = JsonOpt) -> None:
    """A node's qualification runs and health checks, newest first."""
    with api() as client:
        rows = client.get(f"/v1/nodes/{node}/qualifications")
    if as_json:
        print_json(rows)
        return
    table(
        f"qualification runs of {node}",
        ["id", "kind", "level", "backend", "passed", "finished", "summary"],
        [
            [
                r["id"],
                r["kind"],
                r["level"],
                r["backend"],
                "yes" if r["passed"] else "NO",
                r["finished_at"][:19],
                r["summary"],
            ]
            for r in rows
        ],
    )


@qualifications_app.command("show")
def runs_show(
    run_id: int,
    html: Annotated[
        Path | None, typer.Option(help="write the HTML report (with the soak plot) here")
    ] = None,
    as_json: bool = JsonOpt,
) -> None:
    """One run: every measurement with its pass rule."""
    with api() as client:
        run = client.get(f"/v1/qualifications/{run_id}")
        if html is not None:
            html.write_text(client.get(f"/v1/qualifications/{run_id}/report.html"))
    if as_json:
        print_json(run)
        return
    console.print(f"run {run['id']} on {run['node']}: {run['summary']}")
    _print_report(run["report"])
    if html is not None:
        console.print(f"HTML report written to {html}")


@qualifications_app.command("compare")
def runs_compare(chip: str, as_json: bool = JsonOpt) -> None:
    """Nodes of one chip model side by side (latest run of each)."""
    with api() as client:
        rows = client.get("/v1/qualifications/compare", chip=chip)
    if as_json:
        print_json(rows)
        return
    metrics = sorted({k for r in rows for k in r["metrics"]})
    table(
        f"latest qualification of every {chip} node",
        ["node", "run", "passed", *metrics],
        [
            [
                r["node"],
                r["run"],
                "yes" if r["passed"] else "NO",
                *(f"{r['metrics'][k]:.4g}" if k in r["metrics"] else "-" for k in metrics),
            ]
            for r in rows
        ],
    )
