"""Charts the CLI writes as PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def share_chart(report: dict[str, Any], path: Path) -> None:
    """Domestic share per data center in the three views, with each rule's threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centers = [d for d in report["data_centers"] if d["accelerators"]]
    views = ("count", "compute", "cost")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(centers) + 2), 4.2))
    width = 0.8 / len(views)
    for v, view in enumerate(views):
        xs, ys = [], []
        for i, dc in enumerate(centers):
            share = dc["shares"][view]["share"]
            if share is not None:
                xs.append(i + (v - 1) * width)
                ys.append(100 * float(share))
        ax.bar(xs, ys, width, label=f"by {view}")
        for i, dc in enumerate(centers):
            if dc["shares"][view]["share"] is None:
                ax.text(i + (v - 1) * width, 2, "?", ha="center", fontsize=11)
    ax.axhline(50, color="black", linestyle="--", linewidth=1, label="50%")
    ax.set_xticks(
        range(len(centers)),
        [f"{d['data_center']}\n({d['owner_type']}, {d['country']})" for d in centers],
    )
    ax.set_ylabel("domestic share of accelerators, %")
    ax.set_ylim(0, 100)
    ax.set_title(f"Domestic share (rule set {report['rule_set']}; ? = cannot be computed)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
