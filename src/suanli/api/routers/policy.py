"""/v1/policy and /v1/compliance: rule sets, dry-run evaluation, the compliance report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from suanli.api.deps import Admin, DbSession, read_text
from suanli.domain.workloads import EvaluateSpec
from suanli.errors import ValidationError
from suanli.services import compliance, report, workloads
from suanli.store.tables import RuleSetRow

router = APIRouter(tags=["compliance"])
MAX_RULES_BYTES = 1024 * 1024


class RuleSetOut(BaseModel):
    version: str
    effective_from: str
    source: str  # "packaged default" or who uploaded it
    text: str | None = None


@router.get("/v1/policy/rules")
def active_rules(session: DbSession, _admin: Admin) -> RuleSetOut:
    """The rule set in force today, with its YAML text."""
    rules = compliance.active_rules(session)
    row = compliance.active_rule_row(session)
    source = f"uploaded by {row.actor}" if row else "packaged default"
    return RuleSetOut(
        version=rules.version,
        effective_from=rules.effective_from.isoformat(),
        source=source,
        text=compliance.active_rules_text(session),
    )


@router.get("/v1/policy/rules/history")
def rule_history(session: DbSession, _admin: Admin) -> list[RuleSetOut]:
    return [
        RuleSetOut(
            version=r.version,
            effective_from=r.effective_from.isoformat(),
            source=f"uploaded by {r.actor}",
        )
        for r in compliance.rule_history(session)
    ]


@router.post(
    "/v1/policy/rules",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={
        "requestBody": {
            "content": {"application/yaml": {"schema": {"type": "string"}}},
            "required": True,
        }
    },
)
async def upload_rules(request: Request, session: DbSession, admin: Admin) -> RuleSetOut:
    """Upload a rule set (YAML). It takes effect on its ``effective_from`` date."""
    text = await read_text(request, MAX_RULES_BYTES, "rule set")

    def store() -> RuleSetRow:
        row = compliance.upload_rules(session, admin, text)
        session.commit()
        return row

    row = await run_in_threadpool(store)
    return RuleSetOut(
        version=row.version,
        effective_from=row.effective_from.isoformat(),
        source=f"uploaded by {row.actor}",
    )


@router.post("/v1/policy/evaluate")
def evaluate(spec: EvaluateSpec, session: DbSession, _admin: Admin) -> list[dict[str, Any]]:
    """Dry run for the operator: for every data center and chip, may this tenant's workload
    run there, and why not. (Operator-only: it names every data center of the fleet.)"""
    return workloads.evaluate(session, spec)


@router.get("/v1/compliance/report", response_model=None)
def compliance_report(
    session: DbSession,
    _admin: Admin,
    since: Annotated[
        datetime | None, Query(description="start of the period [30 days ago]")
    ] = None,
    until: Annotated[datetime | None, Query(description="end of the period [now]")] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> dict[str, Any] | Response:
    now = datetime.now(UTC)
    until = _aware(until) if until else now
    try:
        since = _aware(since) if since else until - timedelta(days=30)
    except OverflowError:
        raise ValidationError("until is too early for a 30-day period", "until") from None
    if since >= until:
        raise ValidationError("since must be before until", "since")
    body = report.build(session, since, until)
    if format == "csv":
        return Response(report.to_csv(body), media_type="text/csv")
    return body


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
