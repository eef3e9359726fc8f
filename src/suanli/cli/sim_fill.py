"""`suanli sim alibaba` in its default mode: fill the fleet once per policy and compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from suanli.cli.common import console, err_console, print_json, table
from suanli.errors import ValidationError
from suanli.policy.rules import RuleSet
from suanli.sim.cluster import SimJob
from suanli.sim.fleetfile import SimFleet


def fill_options(policies: str, until: float) -> list[str]:
    """The policy names of ``--policies`` (comma-separated), checked with ``--until``."""
    from suanli.scheduler.placement import POLICIES

    names = [p.strip() for p in policies.split(",") if p.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if not names or unknown:
        raise ValidationError(
            f"--policies: unknown {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(POLICIES)}",
            "--policies",
        )
    if not 0 < until <= 10:
        raise ValidationError("--until is in (0, 10] (times the fleet's capacity)", "--until")
    return names


def fill_command(
    work: list[SimJob],
    fleet: SimFleet,
    rules: RuleSet | None,
    names: list[str],
    until: float,
    seed: int,
    out: Path,
    as_json: bool,
) -> None:
    """Fill ``fleet`` with ``work`` once per policy of ``names``, write the report under
    ``out`` and print the table (or the JSON)."""
    from suanli.scheduler.placement import POLICIES
    from suanli.sim.fill import fill
    from suanli.sim.fill_report import fill_rows, fill_summary, write_fill_reports

    workloads = [j.workload for j in work]
    runs = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as bar:
        for name in names:
            task = bar.add_task(f"fill: {name}", total=1.0)

            def step(done: float, task: Any = task) -> None:
                bar.update(task, completed=done)

            runs.append(
                fill(
                    workloads,
                    list(fleet.nodes),
                    fleet.snapshot,
                    POLICIES[name],
                    rules=rules,
                    until=until,
                    seed=seed,
                    progress=step,
                )
            )
    title = "Alibaba 2023: filling the fleet, per policy"
    notes = [f"{len(workloads):,} GPU pods drawn with replacement (seed {seed})"]
    write_fill_reports(out, runs, title, notes)
    if as_json:
        print_json([fill_summary(r) for r in runs])
        return
    head, rows = fill_rows(runs)
    table(title, head, rows)
    console.print(f"report: {out / 'report.html'}", highlight=False)
