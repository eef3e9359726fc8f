"""A qualification report as one self-contained HTML page (the soak plot embedded as PNG)."""

from __future__ import annotations

import base64
import io
from html import escape

from suanli.qualify.model import QualificationReport

__all__ = ["render_html", "soak_png"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; } .verdict { padding: .6em 1em; border-radius: 4px; font-weight: 600; }
.ok { background: #e3f4e6; color: #185c25; } .bad { background: #fbe4e4; color: #8a1c1c; }
table { border-collapse: collapse; margin-top: 1em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fdf0f0; } tr.skipped td { color: #777; }
.status-passed { color: #185c25; } .status-failed { color: #8a1c1c; font-weight: 600; }
"""


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:.4g} {unit}".strip()


def soak_png(report: QualificationReport) -> bytes | None:
    """Throughput over time per device during the soak, or ``None`` without samples."""
    series = [m for m in report.measurements if m.test == "soak" and m.samples]
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for m in series:
        step = m.sample_interval_s or 1.0
        times = [(i + 0.5) * step for i in range(len(m.samples))]
        label = f"{m.device} ({m.status})"
        ax.plot(times, m.samples, marker=".", linewidth=1, label=label)
    ax.set_xlabel("seconds into the soak" if series[0].sample_interval_s else "sample")
    ax.set_ylabel(f"matmul throughput, {series[0].sample_unit or series[0].unit}")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Soak: sustained matmul throughput ({report.level}, {report.backend})")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def render_html(report: QualificationReport) -> str:
    """Summary, every measurement (rule, measured, threshold, status) and the soak plot."""
    ok = report.passed
    rows = []
    for m in report.measurements:
        rows.append(
            f'<tr class="{m.status}"><td>{escape(m.test)}</td><td>{escape(m.device or "node")}</td>'
            f"<td>{escape(m.metric)}</td><td>{escape(m.rule)}</td>"
            f'<td class="num">{escape(_num(m.value, m.unit))}</td>'
            f'<td class="num">{escape(_num(m.threshold))}</td>'
            f'<td class="status-{m.status}">{m.status}</td><td>{escape(m.detail)}</td></tr>'
        )
    png = soak_png(report)
    plot = (
        f'<h2>Soak</h2><img alt="soak throughput over time" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        if png is not None
        else "<p>No soak samples at this level.</p>"
    )
    counts = report.counts()
    facts = [
        ("level", report.level),
        ("backend", report.backend),
        ("chip", report.chip or "-"),
        ("devices", ", ".join(report.devices) or "none"),
        ("started", report.started_at.isoformat(timespec="seconds")),
        ("duration", f"{report.duration_s:.1f} s"),
        (
            "measurements",
            f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped",
        ),
    ]
    facts_html = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in facts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>suanli qualification: {'passed' if ok else 'failed'}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Node qualification ({escape(report.level)})</h1>"
        f'<p class="verdict {"ok" if ok else "bad"}">{escape(report.summary())}</p>'
        f"<table>{facts_html}</table>"
        "<h2>Measurements</h2><table><tr><th>test</th><th>device</th><th>metric</th>"
        "<th>rule</th><th>measured</th><th>threshold</th><th>status</th><th>detail</th></tr>"
        f"{''.join(rows)}</table>{plot}</body></html>\n"
    )
