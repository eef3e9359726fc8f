"""The report of a fill experiment (``sim.fill``): one row per policy, a chart of the share
of the fleet allocated against the demand that arrived, JSON and a self-contained HTML."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suanli.sim.fill import FillRun
from suanli.sim.report import CSS, html_table, png_bytes

__all__ = ["MARKS", "fill_chart", "fill_rows", "fill_summary", "write_fill_reports"]

MARKS = (0.8, 0.9, 1.0, 1.1)  # arrived demand, as a fraction of capacity


def fill_summary(run: FillRun) -> dict[str, Any]:
    return {
        "policy": run.policy,
        "capacity_gpus": run.capacity_milli / 1000,
        "placed": run.placed,
        "failed": run.failed,
        "first_failure_at_arrived": run.failed_at,
        "allocated_at_arrived": {f"{m:.0%}": run.allocated_at(m) for m in MARKS},
        "allocated_final": run.final,
        "fragmentation_final": run.fragmentation,
        "violations": len(run.violations),
        "first_violations": [
            {"job": v.job, "rule": v.rule, "sentence": v.sentence} for v in run.violations[:20]
        ],
        "wall_s": run.wall_s,
    }


def fill_rows(runs: Sequence[FillRun]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the policy table, in % of the fleet's capacity: allocated when
    80..110% had arrived ("@"), arrived demand at the first refused pod, pods refused,
    free capacity the request mix cannot use at the end."""
    head = ["policy", *(f"allocated @{m:.0%}" for m in MARKS)]
    head += ["1st refusal @", "refused", "fragmented", "violations", "time"]
    rows = []
    for r in runs:
        first = "-" if r.failed_at is None else f"{r.failed_at:.1%}"
        rows.append(
            [
                r.policy,
                *(f"{r.allocated_at(m):.1%}" for m in MARKS),
                first,
                f"{r.failed:,}",
                f"{r.fragmentation:.1%}",
                str(len(r.violations)),
                f"{r.wall_s:.1f} s",
            ]
        )
    return head, rows


def fill_chart(runs: Sequence[FillRun], title: str) -> bytes:
    """Allocated share against arrived demand, one line per policy, the ideal dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    top = max((r.arrived[-1] for r in runs if r.arrived), default=1.0)
    ax.plot([0, 1, top], [0, 100, 100], "k--", linewidth=0.8, label="ideal (no fragmentation)")
    for r in runs:
        ax.plot([100 * a for a in r.arrived], [100 * a for a in r.allocated], label=r.policy)
    ax.set_xlim(50, 100 * top)
    ax.set_ylim(50, 102)
    ax.set_xlabel("demand arrived, % of the fleet's GPU capacity")
    ax.set_ylabel("allocated, % of capacity")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    data = png_bytes(fig)
    plt.close(fig)
    return data


def write_fill_reports(
    out: Path, runs: Sequence[FillRun], title: str, notes: Sequence[str] = ()
) -> list[Path]:
    """summary.json, fill.png and report.html under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.json"
    summary.write_text(json.dumps([fill_summary(r) for r in runs], indent=2))
    chart = fill_chart(runs, title)
    png = out / "fill.png"
    png.write_bytes(chart)
    head, rows = fill_rows(runs)
    total = sum(len(r.violations) for r in runs)
    cls = "ok" if total == 0 else "bad"
    name = html.escape(title)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title>"
        f"<style>{CSS}</style></head><body><h1>{name}</h1>",
        "<p class='note'>Pods are drawn from the trace and placed one after another without "
        "leaving, until the demand that arrived exceeds the fleet's capacity; percentages "
        "are of the fleet's GPU capacity (a share of a device counts as that share).</p>",
        *(f"<p class='note'>{html.escape(n)}</p>" for n in notes),
        f"<p class='{cls}'>compliance violations found by the simulator: {total}</p>",
        html_table(head, rows),
        f"<img alt='fill' src='data:image/png;base64,{base64.b64encode(chart).decode()}'>",
    ]
    for r in runs:
        if r.violations:
            parts.append(f"<h2 class='bad'>Violations ({html.escape(r.policy)})</h2>")
            parts.append(
                html_table(
                    ["pod", "rule", "sentence"],
                    [(v.job, v.rule, v.sentence) for v in r.violations[:50]],
                )
            )
    parts.append("</body></html>")
    page = out / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return [summary, png, page]
