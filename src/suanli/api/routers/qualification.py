"""Qualification runs: started and reported by node agents (or by hand), read by operators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from suanli.api.deps import Admin, AgentCaller, DbSession, RowId
from suanli.api.wire import NodeOut
from suanli.qualify.html import render_html
from suanli.qualify.model import QualificationReport
from suanli.services import nodes, qualification
from suanli.store.tables import NodeRow, QualificationRunRow

router = APIRouter(tags=["qualification"])


class RunIn(BaseModel):
    kind: Literal["acceptance", "health"] = "acceptance"
    report: dict[str, Any] = Field(description="the suite's JSON report")


class RunOut(BaseModel):
    id: int
    node: str
    kind: str
    level: str
    backend: str
    chip: str | None
    passed: bool
    summary: str
    started_at: datetime
    finished_at: datetime
    node_state: str | None = None
    report: dict[str, Any] | None = None

    @classmethod
    def of(cls, run: QualificationRunRow, node: str, with_report: bool = False) -> RunOut:
        return cls(
            id=run.id,
            node=node,
            kind=run.kind,
            level=run.level,
            backend=run.backend,
            chip=run.chip,
            passed=run.passed,
            summary=run.summary,
            started_at=run.started_at,
            finished_at=run.finished_at,
            report=run.report if with_report else None,
        )


@router.post("/v1/nodes/{name}/qualification/start")
def start(name: str, session: DbSession, caller: AgentCaller) -> NodeOut:
    """Move a registered (or quarantined) node to qualifying."""
    row = qualification.start(session, caller, name)
    session.commit()
    return NodeOut.of(row, row.data_center.name)


@router.post("/v1/nodes/{name}/qualifications", status_code=status.HTTP_201_CREATED)
def record(name: str, body: RunIn, session: DbSession, caller: AgentCaller) -> RunOut:
    """Store a run; it moves the node: ready / quarantined (acceptance), draining (health)."""
    report = qualification.parse_report(body.report)
    run = qualification.record(session, caller, name, body.kind, report)
    session.commit()
    out = RunOut.of(run, name)
    out.node_state = nodes.get(session, name).state
    return out


@router.get("/v1/nodes/{name}/qualifications")
def list_runs(
    name: str, session: DbSession, _admin: Admin, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[RunOut]:
    return [RunOut.of(r, name) for r in qualification.runs(session, name, limit)]


@router.get("/v1/qualifications/compare")
def compare(chip: str, session: DbSession, _admin: Admin) -> list[dict[str, Any]]:
    """The latest run of every node of one chip model, metric by metric."""
    from suanli.catalog.chips import load_catalog

    return qualification.compare(session, load_catalog().get(chip, field="chip").model)


@router.get("/v1/qualifications/{run_id}")
def get_run(run_id: RowId, session: DbSession, _admin: Admin) -> RunOut:
    run = qualification.get_run(session, run_id)
    node = session.get(NodeRow, run.node_id)
    return RunOut.of(run, node.name if node else "?", with_report=True)


@router.get("/v1/qualifications/{run_id}/report.html", response_class=HTMLResponse)
def report_html(run_id: RowId, session: DbSession, _admin: Admin) -> HTMLResponse:
    run = qualification.get_run(session, run_id)
    return HTMLResponse(render_html(QualificationReport.from_json(run.report)))
