"""The audit log: one row per mutation, in the same transaction as the mutation."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.domain.actor import Actor
from suanli.store.tables import AuditRow

request_id_var: ContextVar[str] = ContextVar("request_id", default="")


def record(
    session: Session,
    actor: Actor,
    action: str,
    resource_type: str,
    resource: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str = "",
) -> None:
    session.add(
        AuditRow(
            actor=actor.name,
            action=action,
            resource_type=resource_type,
            resource=resource,
            before=_jsonable(before),
            after=_jsonable(after),
            reason=reason,
            request_id=request_id_var.get(),
        )
    )


def _jsonable(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, datetime):
            out[key] = item.isoformat()
        elif isinstance(item, Mapping):
            out[key] = _jsonable(item)
        elif isinstance(item, list | tuple):
            out[key] = [_jsonable(i) if isinstance(i, Mapping) else i for i in item]
        else:
            out[key] = item
    return out


def query(
    session: Session,
    resource_type: str | None = None,
    resource: str | None = None,
    actor: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditRow]:
    stmt = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if resource_type:
        stmt = stmt.where(AuditRow.resource_type == resource_type)
    if resource:
        stmt = stmt.where(AuditRow.resource == resource)
    if actor:
        stmt = stmt.where(AuditRow.actor == actor)
    if before_id is not None:
        stmt = stmt.where(AuditRow.id < before_id)
    return list(session.scalars(stmt))
