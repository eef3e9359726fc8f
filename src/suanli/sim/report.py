"""What a simulation shows an operator: metrics, per-job CSV, PNG charts, an HTML report.

``summarize(run, prices)`` computes, from a ``SimRun``:

* job completion time (JCT: finish - arrival) and queueing delay (first start - arrival):
  mean, median, p99 over the jobs that finished (started); the makespan (first arrival to
  last finish);
* utilization per chip type: accelerator-seconds busy / accelerator-seconds available over
  the makespan (a share of a device counts as that share);
* the domestic usage share: accelerator-seconds on domestic chips / all busy ones;
* the operator's cost per currency, at each data center's cost per accelerator-hour: for
  the busy hours and for the whole capacity held over the makespan; revenue per currency
  from a price book (``prices``: chip -> (micro-units per hour, spot discount, currency);
  spot work gets the discount), and the busy hours no price covers;
* finish-time fairness: per tenant, the sum of its JCTs over the sum of its jobs' times
  alone on the fastest chip they may use (1 = as if alone on the best chip); the median and
  the largest over tenants and Jain's index of them (1 = every tenant slowed alike);
* compliance violations found by the simulator's own check (should be 0);
* wall time of the scheduler per round: median, p99, max;
* jobs that never started, and the most common reason the scheduler gave.

``write_reports`` writes ``summary.json``, ``jobs.csv``, three PNGs (JCT CDF, utilization
per chip over time, queue length over time) and ``report.html`` with the PNGs embedded;
given two runs (a what-if) the charts and the HTML hold both, side by side.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from suanli.sim.cluster import SimRun

__all__ = [
    "CSS",
    "Prices",
    "compare",
    "headline",
    "html_table",
    "jain",
    "percentile",
    "png_bytes",
    "summarize",
    "write_jobs_csv",
    "write_reports",
]

Prices = Mapping[str, tuple[int, float, str]]  # chip -> (micros per hour, spot discount, ccy)
HOUR = 3600.0
BINS = 200


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation), ``None`` when empty."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def jain(values: Sequence[float]) -> float | None:
    """Jain's fairness index (sum x)^2 / (n sum x^2): 1 when all are equal."""
    if not values:
        return None
    squares = sum(v * v for v in values)
    return None if squares == 0 else sum(values) ** 2 / (len(values) * squares)


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    return {
        "mean": _mean(values),
        "median": percentile(values, 50),
        "p99": percentile(values, 99),
    }


def _money(micros: float) -> float:
    return round(micros / 1_000_000, 2)


def summarize(run: SimRun, prices: Prices | None = None) -> dict[str, Any]:
    """The metrics of the module docstring, as JSON-ready data."""
    prices = prices or {}
    finished = [j for j in run.jobs if j.finish is not None]
    started = [j for j in run.jobs if j.start is not None]
    never = [j for j in run.jobs if j.start is None]
    jct = [j.jct for j in finished if j.jct is not None]
    wait = [j.queueing for j in started if j.queueing is not None]
    span = max(run.end - run.start, 0.0)
    busy: defaultdict[str, float] = defaultdict(float)
    domestic = 0.0
    cost_busy: defaultdict[str, float] = defaultdict(float)
    uncosted = 0.0
    revenue: defaultdict[str, float] = defaultdict(float)
    unpriced: defaultdict[str, float] = defaultdict(float)
    for s in run.segments:
        secs = s.devices * (s.end - s.start)
        busy[s.chip] += secs
        if s.domestic:
            domestic += secs
        total_parts = sum(n for _, n in s.data_centers) or 1
        for dc, n in s.data_centers:
            part = secs * n / total_parts
            cost = run.costs.get((dc, s.chip))
            if cost is None or not cost[1]:
                uncosted += part / HOUR
            else:
                cost_busy[cost[1]] += cost[0] * part / HOUR
        price = prices.get(s.chip)
        if price is None:
            unpriced[s.chip] += secs / HOUR
        else:
            micros, discount, currency = price
            revenue[currency] += micros * (1 - (discount if s.spot else 0.0)) * secs / HOUR
    cost_held: defaultdict[str, float] = defaultdict(float)
    for (dc, chip), count in run.capacity_by_place.items():
        cost = run.costs.get((dc, chip))
        if cost is not None and cost[1]:
            cost_held[cost[1]] += cost[0] * count * span / HOUR
    all_busy = sum(busy.values())
    utilization = {
        chip: (busy[chip] / (cap * span) if cap and span else None)
        for chip, cap in sorted(run.capacity.items())
    }
    total_cap = sum(run.capacity.values())
    per_tenant: dict[str, list[float]] = {}
    for j in finished:
        if j.ideal_s and j.jct is not None:
            acc = per_tenant.setdefault(j.tenant, [0.0, 0.0])
            acc[0] += j.jct
            acc[1] += j.ideal_s
    ftf = {t: v[0] / v[1] for t, v in sorted(per_tenant.items()) if v[1] > 0}
    reasons = Counter(j.reason for j in never if j.reason)
    rounds_ms = [r * 1000 for r in run.round_times]
    currencies = sorted(set(cost_busy) | set(cost_held) | set(revenue))
    money = {
        c: {
            "cost_busy": _money(cost_busy[c]),
            "cost_capacity": _money(cost_held[c]),
            "revenue": _money(revenue[c]),
            "margin_on_capacity": _money(revenue[c] - cost_held[c]),
        }
        for c in currencies
    }
    return {
        "label": run.label,
        "policy": run.policy,
        "reference_chip": run.reference_chip,
        "perf_assumptions": [
            {"chip": a.chip, "metric": a.metric, "value": a.value, "source": a.source}
            for a in run.assumptions
        ],
        "jobs": {
            "total": len(run.jobs),
            "finished": len(finished),
            "started": len(started),
            "never_started": len(never),
            "preemptions": sum(j.preemptions for j in run.jobs),
            "dropped": dict(run.dropped),
        },
        "jct_s": _stats(jct),
        "queueing_s": _stats(wait),
        "makespan_s": span,
        "capacity": dict(sorted(run.capacity.items())),
        "capacity_by_data_center": _by_data_center(run),
        "accelerators": total_cap,
        "utilization": utilization,
        "utilization_all": (all_busy / (total_cap * span) if total_cap and span else None),
        "busy_accelerator_hours": {c: busy[c] / HOUR for c in sorted(busy)},
        "domestic_usage_share": (domestic / all_busy if all_busy else None),
        "money": money,
        "uncosted_accelerator_hours": uncosted,
        "unpriced_accelerator_hours": dict(sorted(unpriced.items())),
        "fairness": {
            "per_tenant": ftf,
            "median": percentile(list(ftf.values()), 50),
            "max": max(ftf.values(), default=None),
            "jain": jain(list(ftf.values())),
        },
        "violations": {
            "count": len(run.violations),
            "first": [
                {"time": v.time, "job": v.job, "rule": v.rule, "sentence": v.sentence}
                for v in run.violations[:20]
            ],
        },
        "scheduler_ms_per_round": {
            "rounds": len(rounds_ms),
            "median": percentile(rounds_ms, 50),
            "p99": percentile(rounds_ms, 99),
            "max": max(rounds_ms, default=None),
        },
        "never_started": {
            "count": len(never),
            "most_common_reason": reasons.most_common(1)[0][0] if reasons else None,
            "reasons": dict(reasons.most_common(5)),
        },
        "wall_s": run.wall_s,
    }


def _by_data_center(run: SimRun) -> dict[str, int]:
    out = Counter[str]()
    for (dc, _chip), count in run.capacity_by_place.items():
        out[dc] += count
    return dict(sorted(out.items()))


# --- the headline table ---------------------------------------------------------------------


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value / HOUR:,.2f} h"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def headline(summary: Mapping[str, Any]) -> list[tuple[str, float | None, str]]:
    """(metric, value, shown) rows: what the tables print and a what-if compares."""
    s = summary
    rows: list[tuple[str, float | None, str]] = []

    def add(name: str, value: float | None, shown: str) -> None:
        rows.append((name, value, shown))

    jobs = s["jobs"]
    add("jobs", jobs["total"], f"{jobs['total']:,}")
    add("jobs finished", jobs["finished"], f"{jobs['finished']:,}")
    add("jobs never started", jobs["never_started"], f"{jobs['never_started']:,}")
    add("preemptions", jobs["preemptions"], f"{jobs['preemptions']:,}")
    add("accelerators", s["accelerators"], f"{s['accelerators']:,}")
    for chip, count in s["capacity"].items():
        add(f"accelerators: {chip}", count, f"{count:,}")
    for dc, count in s["capacity_by_data_center"].items():
        add(f"accelerators in {dc}", count, f"{count:,}")
    for key, label in (("jct_s", "JCT"), ("queueing_s", "queueing delay")):
        for stat in ("mean", "median", "p99"):
            v = s[key][stat]
            add(f"{label} {stat}", v, _hours(v))
    add("makespan", s["makespan_s"], _hours(s["makespan_s"]))
    add("utilization (all)", s["utilization_all"], _pct(s["utilization_all"]))
    for chip, u in s["utilization"].items():
        add(f"utilization: {chip}", u, _pct(u))
    add("domestic usage share", s["domestic_usage_share"], _pct(s["domestic_usage_share"]))
    for ccy, m in s["money"].items():
        add(f"cost, busy hours ({ccy})", m["cost_busy"], f"{m['cost_busy']:,.2f} {ccy}")
        add(f"cost, capacity ({ccy})", m["cost_capacity"], f"{m['cost_capacity']:,.2f} {ccy}")
        if m["revenue"]:
            add(f"revenue ({ccy})", m["revenue"], f"{m['revenue']:,.2f} {ccy}")
    fair = s["fairness"]
    add("fairness: median JCT/ideal", fair["median"], _num(fair["median"]))
    add("fairness: max JCT/ideal", fair["max"], _num(fair["max"]))
    add("fairness: Jain's index", fair["jain"], _num(fair["jain"], 3))
    add("compliance violations", s["violations"]["count"], str(s["violations"]["count"]))
    sched = s["scheduler_ms_per_round"]
    for stat in ("median", "p99", "max"):
        add(f"scheduler ms/round {stat}", sched[stat], _num(sched[stat], 3))
    never = s["never_started"]
    if never["most_common_reason"]:
        reason = str(never["most_common_reason"])
        reason = reason if len(reason) <= 90 else reason[:89] + "…"
        add("most common reason never started", None, reason)
    add("simulation wall time", s["wall_s"], f"{s['wall_s']:.1f} s")
    return rows


def compare(base: Mapping[str, Any], changed: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, baseline, changed, delta) rows of two summaries."""
    a = {name: (v, shown) for name, v, shown in headline(base)}
    b = {name: (v, shown) for name, v, shown in headline(changed)}
    names = list(a) + [n for n in b if n not in a]
    out = []
    for name in names:
        va, sa = a.get(name, (None, "-"))
        vb, sb = b.get(name, (None, "-"))
        delta = ""
        if name.startswith("accelerators") and (va is not None or vb is not None):
            delta = f"{(vb or 0) - (va or 0):+,.0f}"
        elif va is not None and vb is not None:
            if name.startswith(("utilization", "domestic")):
                delta = f"{100 * (vb - va):+.1f} pt"
            elif va:
                delta = f"{100 * (vb - va) / abs(va):+.1f}%"
            elif vb:
                delta = f"{vb - va:+,.2f}"
            else:
                delta = "0"
        out.append((name, sa, sb, delta))
    return out


# --- files ---------------------------------------------------------------------------------

JOB_COLUMNS = (
    "id", "tenant", "kind", "priority", "accelerators", "gpu_milli", "arrival_s", "start_s",
    "finish_s", "jct_s", "queueing_s", "ideal_s", "chips", "data_centers", "preemptions",
    "reason",
)  # fmt: skip


def _opt(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def write_jobs_csv(run: SimRun, path: Path) -> None:
    def at(t: float | None) -> str:
        return "" if t is None else f"{t - run.start:.1f}"

    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(JOB_COLUMNS)
        for j in run.jobs:
            out.writerow(
                [
                    j.id, j.tenant, j.kind, j.priority, j.accelerators, j.gpu_milli,
                    at(j.arrival), at(j.start), at(j.finish), _opt(j.jct),
                    _opt(j.queueing), _opt(j.ideal_s), "|".join(j.chips),
                    "|".join(j.data_centers), j.preemptions, j.reason,
                ]
            )  # fmt: skip


def _utilization_series(run: SimRun, edges: np.ndarray[Any, Any]) -> dict[str, list[float]]:
    """Per chip, the busy share of its capacity in each bin between ``edges``."""
    events: dict[str, list[tuple[float, float]]] = {}
    for s in run.segments:
        events.setdefault(s.chip, []).extend(((s.start, s.devices), (s.end, -s.devices)))
    out: dict[str, list[float]] = {}
    widths = np.diff(edges)
    for chip, cap in sorted(run.capacity.items()):
        evs = sorted(events.get(chip, []))
        if not evs or not cap:
            out[chip] = [0.0] * len(widths)
            continue
        times = np.array([t for t, _ in evs])
        rate = np.cumsum([d for _, d in evs])
        integral = np.concatenate([[0.0], np.cumsum(rate[:-1] * np.diff(times))])
        at = np.interp(edges, times, integral, left=0.0, right=float(integral[-1]))
        share = np.diff(at) / np.where(widths > 0, widths, 1.0) / cap
        out[chip] = [float(x) for x in share]
    return out


def png_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def charts(runs: Sequence[SimRun]) -> dict[str, bytes]:
    """PNG bytes of the three charts, each with every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run in runs:
        jct = sorted((j.jct or 0.0) / HOUR for j in run.jobs if j.jct is not None)
        if jct:
            ys = np.arange(1, len(jct) + 1) / len(jct)
            ax.plot(np.maximum(jct, 1e-3), ys, label=run.label or run.policy)
    ax.set_xscale("log")
    ax.set_xlabel("job completion time, hours (log)")
    ax.set_ylabel("share of finished jobs")
    ax.set_title("JCT CDF")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out["jct_cdf.png"] = png_bytes(fig)
    plt.close(fig)

    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 3.4 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        span = max(run.end - run.start, 1.0)
        edges = np.linspace(run.start, run.start + span, BINS + 1)
        mids = (edges[:-1] - run.start + span / BINS / 2) / HOUR
        for chip, series in _utilization_series(run, edges).items():
            ax.plot(mids, [100 * x for x in series], label=chip, linewidth=1)
        ax.set_ylim(0, 105)
        ax.set_ylabel("busy, % of capacity")
        ax.set_title(f"Utilization per chip over time ({run.label or run.policy})")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("simulated hours")
    fig.tight_layout()
    out["utilization.png"] = png_bytes(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.6))
    for run in runs:
        if run.queue:
            xs = [(t - run.start) / HOUR for t, _ in run.queue]
            ax.step(xs, [q for _, q in run.queue], where="post", linewidth=1,
                    label=run.label or run.policy)  # fmt: skip
    ax.set_xlabel("simulated hours")
    ax.set_ylabel("jobs queued")
    ax.set_title("Queue length over time")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    out["queue.png"] = png_bytes(fig)
    plt.close(fig)
    return out


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00;font-weight:bold}.ok{color:#070}img{max-width:100%;margin:0.5em 0}
.note{color:#555;font-size:0.9em}
"""


def html_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = []
    for row in rows:
        cells = []
        for k, v in enumerate(row):
            cls = ' class="n"' if k else ""
            cells.append(f"<td{cls}>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def render_html(
    title: str,
    summaries: Sequence[Mapping[str, Any]],
    images: Mapping[str, bytes],
    notes: Sequence[str] = (),
) -> str:
    """One self-contained page: the headline table (one column per run, and the change
    when two), fairness per tenant, violations, the charts embedded as base64."""
    name = html.escape(title)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{name}</title>"
        f"<style>{CSS}</style></head><body><h1>{name}</h1>"
    ]
    first = summaries[0]
    parts.append(
        f"<p class='note'>policy {html.escape(str(first['policy']))}; run times are on the "
        f"reference chip {html.escape(str(first['reference_chip']))} and scale with each "
        "chip's rate from the perf model.</p>"
    )
    for note in notes:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    total = sum(int(s["violations"]["count"]) for s in summaries)
    cls = "ok" if total == 0 else "bad"
    parts.append(f"<p class='{cls}'>compliance violations found by the simulator: {total}</p>")
    if len(summaries) == 2:
        rows = compare(summaries[0], summaries[1])
        head = ["metric", str(summaries[0]["label"]), str(summaries[1]["label"]), "change"]
        parts.append(html_table(head, rows))
    else:
        parts.append(html_table(["metric", "value"], [(n, v) for n, _, v in headline(first)]))
    parts.append("<h2>Charts</h2>")
    for name in ("jct_cdf.png", "utilization.png", "queue.png"):
        if name in images:
            data = base64.b64encode(images[name]).decode("ascii")
            parts.append(f"<img alt='{name}' src='data:image/png;base64,{data}'>")
    for s in summaries:
        label = html.escape(str(s["label"]))
        parts.append(f"<h2>Finish-time fairness per tenant ({label})</h2>")
        ftf = s["fairness"]["per_tenant"]
        parts.append(html_table(["tenant", "sum JCT / sum ideal"],
                            [(t, f"{v:.2f}") for t, v in ftf.items()]))  # fmt: skip
        if s["never_started"]["reasons"]:
            parts.append(f"<h2>Why jobs never started ({label})</h2>")
            parts.append(
                html_table(["reason", "jobs"], list(s["never_started"]["reasons"].items()))
            )
        if s["violations"]["first"]:
            parts.append(f"<h2 class='bad'>Violations ({label})</h2>")
            parts.append(html_table(["job", "rule", "sentence"],
                                [(v["job"], v["rule"], v["sentence"])
                                 for v in s["violations"]["first"]]))  # fmt: skip
    assumptions = first["perf_assumptions"]
    if assumptions:
        parts.append("<h2>Performance assumptions</h2>")
        parts.append(html_table(["chip", "metric", "value", "source"],
                            [(a["chip"], a["metric"], a["value"], a["source"])
                             for a in assumptions]))  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(
    out: Path,
    runs: Sequence[SimRun],
    summaries: Sequence[Mapping[str, Any]],
    title: str,
    notes: Sequence[str] = (),
) -> list[Path]:
    """summary.json, jobs CSV per run, the PNGs and report.html under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    path = out / "summary.json"
    data: Any = summaries[0] if len(summaries) == 1 else {str(s["label"]): s for s in summaries}
    path.write_text(json.dumps(data, indent=2, default=_jsonable))
    written.append(path)
    for run in runs:
        name = "jobs.csv" if len(runs) == 1 else f"jobs-{run.label}.csv"
        write_jobs_csv(run, out / name)
        written.append(out / name)
    images = charts(runs)
    for name, data_png in images.items():
        (out / name).write_bytes(data_png)
        written.append(out / name)
    page = out / "report.html"
    page.write_text(render_html(title, summaries, images, notes), encoding="utf-8")
    written.append(page)
    return written


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
