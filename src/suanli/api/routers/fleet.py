"""POST /v1/fleet/apply: a whole fleet file in one transaction (or a dry run)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from suanli.api.deps import Admin, DbSession, OverrideReason
from suanli.domain import fleet as fleet_file
from suanli.domain.actor import Actor
from suanli.errors import ValidationError
from suanli.services import fleet

router = APIRouter(prefix="/v1/fleet", tags=["fleet"])
MAX_BYTES = 16 * 1024 * 1024


class ApplyOut(BaseModel):
    dry_run: bool
    created_data_centers: list[str]
    updated_data_centers: list[str]
    unchanged_data_centers: int
    created_nodes: int
    updated_nodes: list[str]
    unchanged_nodes: int


@router.post(
    "/apply",
    openapi_extra={
        "requestBody": {
            "content": {"application/yaml": {"schema": {"type": "string"}}},
            "required": True,
        }
    },
)
async def apply_fleet(
    request: Request,
    admin: Admin,
    session: DbSession,
    dry_run: Annotated[bool, Query(description="plan only; write nothing")] = False,
    override_reason: OverrideReason = None,
) -> ApplyOut:
    """Body: the fleet file as YAML (``application/yaml``) or the same structure as JSON."""
    raw = await request.body()
    if len(raw) > MAX_BYTES:
        raise ValidationError(f"fleet file is larger than {MAX_BYTES} bytes")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ValidationError("fleet file must be UTF-8 text") from None
    parsed = fleet_file.parse_text(text)  # JSON is YAML, so one parser serves both
    result = await _run(parsed, admin, session, dry_run, override_reason)
    return ApplyOut(dry_run=dry_run, **result)


async def _run(
    parsed: fleet_file.ParsedFleet,
    admin: Actor,
    session: Session,
    dry_run: bool,
    override_reason: str | None,
) -> dict[str, Any]:
    """The apply runs in a worker thread (blocking database I/O); a dry run rolls back."""

    def work() -> dict[str, Any]:
        result = fleet.apply(session, admin, parsed, override_reason)
        if dry_run:
            session.rollback()
        else:
            session.commit()
        return dict(result.__dict__)

    return await run_in_threadpool(work)
