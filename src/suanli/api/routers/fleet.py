"""POST /v1/fleet/apply: a whole fleet file in one transaction (or a dry run)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from suanli.api.deps import Admin, DbSession, OverrideReason, read_text
from suanli.domain import fleet as fleet_file
from suanli.domain.actor import Actor
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
    text = await read_text(request, MAX_BYTES, "fleet file")
    result = await run_in_threadpool(_apply, text, admin, session, dry_run, override_reason)
    return ApplyOut(dry_run=dry_run, **result)


def _apply(
    text: str, admin: Actor, session: Session, dry_run: bool, override_reason: str | None
) -> dict[str, Any]:
    """Parsing and the database work run in a worker thread; a dry run rolls back."""
    parsed = fleet_file.parse_text(text)  # JSON is YAML, so one parser serves both
    result = fleet.apply(session, admin, parsed, override_reason)
    if dry_run:
        session.rollback()
    else:
        session.commit()
    return dict(result.__dict__)
