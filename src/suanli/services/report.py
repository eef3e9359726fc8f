"""The compliance report: shares (three views), usage share, bound artifacts, refusals."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from suanli.catalog.chips import load_catalog
from suanli.policy.evaluate import rule_status, shares_of, usage_share
from suanli.policy.shares import ShareValue
from suanli.services import compliance, holdings, workloads
from suanli.store.tables import DataCenterRow, PolicyDecisionRow, WorkloadRow


def _share(value: ShareValue) -> dict[str, Any]:
    return {
        "share": None if value.value is None else f"{float(value.value):.6f}",
        "exact": None if value.value is None else str(value.value),
        "domestic": str(value.domestic),
        "total": str(value.total),
        "note": value.note,
    }


def _usage(
    session: Session, since: datetime, until: datetime
) -> dict[str, list[tuple[bool, int, float | int | Fraction]]]:
    """Per data center: (domestic?, accelerators, seconds inside the period) of workloads."""
    stmt = (
        select(DataCenterRow.name, WorkloadRow)
        .join(DataCenterRow, WorkloadRow.data_center_id == DataCenterRow.id)
        .where(
            WorkloadRow.started_at < until,
            or_(WorkloadRow.finished_at.is_(None), WorkloadRow.finished_at > since),
        )
    )
    out: dict[str, list[tuple[bool, int, float | int | Fraction]]] = {}
    for dc, w in session.execute(stmt):
        end = min(w.finished_at or until, until)
        start = max(w.started_at or until, since)
        seconds = max(Fraction((end - start) // timedelta(microseconds=1), 10**6), Fraction(0))
        for part_dc, n in holdings.parts_of(w, dc):  # a gang may span data centers
            out.setdefault(part_dc, []).append((w.domestic, n, seconds))
    return out


def _frac_text(value: Fraction | None) -> str | None:
    return None if value is None else f"{float(value):.6f}"


def build(session: Session, since: datetime, until: datetime) -> dict[str, Any]:
    catalog = load_catalog()
    rules = compliance.active_rules(session)
    snap = compliance.fleet_snapshot(session)
    usage = _usage(session, since, until)
    centers = []
    for name, dc in sorted(snap.data_centers.items()):
        shares = shares_of(snap, name, catalog)
        domestic_installed = sum(
            n.count for n in snap.nodes_in(name) if n.chip and catalog.get(n.chip).domestic_cn
        )
        domestic_busy = sum(
            a.count
            for a in snap.allocations  # running workloads
            if a.data_center == name and catalog.get(a.chip).domestic_cn
        )
        centers.append(
            {
                "data_center": name,
                "country": dc.country,
                "owner_type": dc.owner_type,
                "accelerators": int(shares.count.total),
                "domestic_accelerators": domestic_installed,
                "domestic_idle_now": domestic_installed - domestic_busy,
                "shares": {
                    "count": _share(shares.count),
                    "compute": _share(shares.compute),
                    "cost": _share(shares.cost),
                },
                "usage_share": _frac_text(usage_share(usage.get(name, []))),
                "rules": [
                    {
                        "rule": r.id,
                        "view": r.view,
                        "requirement": r.wording,
                        "status": rule_status(r, shares),
                    }
                    for r in rules.domestic_share
                    if r.covers.covers(name, dc.country, dc.owner_type)
                ],
            }
        )
    all_nodes = snap.nodes
    fleet_total = sum(n.count for n in all_nodes if n.chip)
    fleet_domestic = sum(n.count for n in all_nodes if n.chip and catalog.get(n.chip).domestic_cn)
    refusals = list(
        session.scalars(
            select(PolicyDecisionRow)
            .where(PolicyDecisionRow.at >= since, PolicyDecisionRow.at < until)
            .order_by(PolicyDecisionRow.id.desc())
        )
    )
    by_rule: dict[str, int] = {}
    for r in refusals:
        if not r.overridden:
            by_rule[r.rule] = by_rule.get(r.rule, 0) + 1
    bound = [
        {
            "tenant": t,
            "artifact": a.name,
            "kind": a.kind,
            "countries": a.residency,
            "derived_from": a.residency_sources,
        }
        for a, t in workloads.list_artifacts(session)
        if a.residency is not None
    ]
    return {
        "period": {"since": since.isoformat(), "until": until.isoformat()},
        "rule_set": rules.version,
        "fleet": {
            "accelerators": fleet_total,
            "domestic_accelerators": fleet_domestic,
            "domestic_share_by_count": _frac_text(
                Fraction(fleet_domestic, fleet_total) if fleet_total else None
            ),
            "usage_share": _frac_text(usage_share([i for v in usage.values() for i in v])),
        },
        "data_centers": centers,
        "residency_bound_artifacts": bound,
        "refusals": {
            "by_rule": by_rule,
            "overrides": sum(1 for r in refusals if r.overridden),
            "recent": [
                {
                    "at": r.at.isoformat(),
                    "rule": r.rule,
                    "kind": r.kind,
                    "subject": r.subject,
                    "sentence": r.sentence,
                    "overridden": r.overridden,
                    "override_reason": r.override_reason,
                    "actor": r.actor,
                }
                for r in refusals[:100]
            ],
        },
    }


CSV_COLUMNS = [
    "data_center",
    "country",
    "owner_type",
    "accelerators",
    "domestic_accelerators",
    "domestic_idle_now",
    "share_by_count",
    "share_by_compute",
    "share_by_cost",
    "usage_share",
    "rules",
]


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for dc in report["data_centers"]:
        shares = dc["shares"]
        writer.writerow(
            [
                dc["data_center"],
                dc["country"],
                dc["owner_type"],
                dc["accelerators"],
                dc["domestic_accelerators"],
                dc["domestic_idle_now"],
                shares["count"]["share"] or f"unknown: {shares['count']['note']}",
                shares["compute"]["share"] or f"unknown: {shares['compute']['note']}",
                shares["cost"]["share"] or f"unknown: {shares['cost']['note']}",
                dc["usage_share"] or "",
                ";".join(f"{r['rule']}={r['status']}" for r in dc["rules"]),
            ]
        )
    return out.getvalue()
