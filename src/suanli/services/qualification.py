"""Qualification wired into the node lifecycle.

* ``start``: a registered (or repaired, quarantined) node goes to ``qualifying``.
* ``record`` of an acceptance run: standard or long passed -> ``ready``; any failure ->
  ``quarantined`` with the failed tests named; a quick pass proves too little and changes
  nothing.
* ``record`` of a health check on a ready node: a failure drains it.
Measured throughput goes to the calibration table for the performance model.
"""

from __future__ import annotations

import statistics
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.domain.actor import Actor
from suanli.domain.lifecycle import NodeState
from suanli.errors import ConflictError, NotFoundError, ValidationError
from suanli.qualify.model import QualificationReport
from suanli.services import audit, holdings, nodes
from suanli.store.tables import CalibrationRow, NodeRow, QualificationRunRow
from suanli.store.types import utcnow

RunKind = Literal["acceptance", "health"]
ACCEPTING_LEVELS = ("standard", "long")
CALIBRATED_UNITS = ("TFLOPS", "TOPS", "GFLOPS", "GB/s")


def start(session: Session, actor: Actor, name: str) -> NodeRow:
    row = nodes.get(session, name)
    state = NodeState(row.state)
    if state in (NodeState.REGISTERED, NodeState.QUARANTINED):
        nodes.set_state(
            session, actor, row, NodeState.QUALIFYING, f"qualification started by {actor.name}"
        )
    elif state is not NodeState.QUALIFYING:
        raise ConflictError(
            f"node {name!r} is {state.value}; only registered or quarantined nodes qualify"
        )
    return row


def parse_report(data: Any) -> QualificationReport:
    try:
        return QualificationReport.from_json(data)
    except ValidationError as exc:
        field = f"report.{exc.field}" if exc.field else "report"
        raise ValidationError(f"not a qualification report: {exc.message}", field) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(f"not a qualification report: {exc}", "report") from None


def record(
    session: Session, actor: Actor, name: str, kind: RunKind, report: QualificationReport
) -> QualificationRunRow:
    row = nodes.get(session, name)
    state = NodeState(row.state)
    if kind == "acceptance" and state is not NodeState.QUALIFYING:
        raise ConflictError(f"node {name!r} is {state.value}; start its qualification first")
    run = QualificationRunRow(
        node_id=row.id,
        kind=kind,
        level=report.level,
        backend=report.backend,
        chip=report.chip,
        passed=report.passed,
        summary=report.summary(),
        started_at=report.started_at,
        finished_at=report.finished_at,
        report=report.to_json(),
        actor=actor.name,
    )
    session.add(run)
    session.flush()
    _calibrate(session, row, run, report)
    audit.record(
        session,
        actor,
        "qualification",
        "node",
        name,
        after={
            "run": run.id,
            "kind": kind,
            "level": report.level,
            "passed": report.passed,
            "summary": run.summary,
        },
    )
    if kind == "acceptance":
        if not report.passed:
            nodes.set_state(
                session, actor, row, NodeState.QUARANTINED, f"qualification failed: {run.summary}"
            )
        elif report.level in ACCEPTING_LEVELS:
            nodes.set_state(
                session,
                actor,
                row,
                NodeState.READY,
                f"qualification passed ({report.level}, run {run.id})",
            )
    elif not report.passed and state is NodeState.READY:
        nodes.set_state(
            session, actor, row, NodeState.DRAINING, f"health check failed: {run.summary}"
        )
    return run


def _calibrate(
    session: Session, node: NodeRow, run: QualificationRunRow, report: QualificationReport
) -> None:
    if node.chip is None or report.chip != node.chip:
        return
    by_metric: dict[tuple[str, str], list[float]] = {}
    for m in report.measurements:
        if m.value is not None and m.unit in CALIBRATED_UNITS and m.status != "skipped":
            by_metric.setdefault((m.metric, m.unit), []).append(m.value)
    for (metric, unit), values in sorted(by_metric.items()):
        session.add(
            CalibrationRow(
                chip=node.chip,
                metric=metric,
                value=statistics.median(values),
                unit=unit,
                node_id=node.id,
                run_id=run.id,
            )
        )


def health_check_due(session: Session, row: NodeRow, interval_s: float) -> bool:
    """A ready node with nothing running, whose last health check is older than interval."""
    if NodeState(row.state) is not NodeState.READY:
        return False
    if holdings.workloads_on(session, row.id):
        return False
    last = session.scalar(
        select(func.max(QualificationRunRow.finished_at)).where(
            QualificationRunRow.node_id == row.id
        )
    )
    return last is None or utcnow() - last > timedelta(seconds=interval_s)


def runs(session: Session, name: str, limit: int = 50) -> list[QualificationRunRow]:
    row = nodes.get(session, name)
    stmt = (
        select(QualificationRunRow)
        .where(QualificationRunRow.node_id == row.id)
        .order_by(QualificationRunRow.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def get_run(session: Session, run_id: int) -> QualificationRunRow:
    run = session.get(QualificationRunRow, run_id)
    if run is None:
        raise NotFoundError("qualification run", str(run_id))
    return run


def compare(session: Session, chip: str) -> list[dict[str, Any]]:
    """The latest passed-or-failed acceptance/health run of every node of ``chip``:
    per node, the median of each measured metric — to spot the slow one among peers."""
    latest = (
        select(QualificationRunRow.node_id, func.max(QualificationRunRow.id).label("run_id"))
        .where(QualificationRunRow.chip == chip)
        .group_by(QualificationRunRow.node_id)
        .subquery()
    )
    stmt = (
        select(NodeRow.name, QualificationRunRow)
        .join(latest, latest.c.run_id == QualificationRunRow.id)
        .join(NodeRow, NodeRow.id == QualificationRunRow.node_id)
        .order_by(NodeRow.name)
    )
    out = []
    for node_name, run in session.execute(stmt):
        report = QualificationReport.from_json(run.report)
        metrics: dict[str, list[float]] = {}
        for m in report.measurements:
            if m.value is not None and m.status != "skipped":
                metrics.setdefault(f"{m.metric} [{m.unit}]", []).append(m.value)
        out.append(
            {
                "node": node_name,
                "run": run.id,
                "level": run.level,
                "passed": run.passed,
                "finished_at": run.finished_at.isoformat(),
                "metrics": {k: statistics.median(v) for k, v in sorted(metrics.items())},
            }
        )
    return out
