"""GET /v1/audit: the audit log, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from suanli.api.deps import Admin, DbSession
from suanli.api.wire import AuditOut
from suanli.services import audit

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("")
def list_audit(
    session: DbSession,
    _admin: Admin,
    resource_type: str | None = None,
    resource: str | None = None,
    actor: str | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditOut]:
    rows = audit.query(session, resource_type, resource, actor, limit, before_id)
    return [AuditOut.of(r) for r in rows]
