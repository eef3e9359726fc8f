"""Tenants and their users."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from suanli.domain.actor import Actor
from suanli.domain.specs import LimitsPatch, TenantSpec, UserSpec
from suanli.errors import ConflictError, NotFoundError
from suanli.services import audit
from suanli.store.tables import TenantRow, UserRow


def snapshot(row: TenantRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "display_name": row.display_name,
        "country": row.country,
        "verified": row.verified,
        "rpm_limit": row.rpm_limit,
        "tpm_limit": row.tpm_limit,
    }


def get(session: Session, name: str) -> TenantRow:
    row = session.scalar(
        select(TenantRow).where(TenantRow.name == name).options(selectinload(TenantRow.users))
    )
    if row is None:
        raise NotFoundError("tenant", name)
    return row


def list_all(session: Session) -> list[TenantRow]:
    stmt = select(TenantRow).options(selectinload(TenantRow.users)).order_by(TenantRow.name)
    return list(session.scalars(stmt))


def create(session: Session, actor: Actor, spec: TenantSpec) -> TenantRow:
    if session.scalar(select(TenantRow.id).where(TenantRow.name == spec.name)) is not None:
        raise ConflictError(f"tenant {spec.name!r} already exists")
    row = TenantRow(**spec.model_dump())
    row.users = []
    session.add(row)
    session.flush()
    audit.record(session, actor, "create", "tenant", row.name, after=snapshot(row))
    return row


def add_user(session: Session, actor: Actor, tenant: str, spec: UserSpec) -> UserRow:
    row = get(session, tenant)
    email = spec.email.lower()
    if any(u.email == email for u in row.users):
        raise ConflictError(f"tenant {tenant!r} already has a user {email!r}")
    user = UserRow(tenant=row, email=email, name=spec.name, role=spec.role)
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "add_user",
        "tenant",
        tenant,
        after={"email": email, "name": spec.name, "role": spec.role},
    )
    return user


def find_user(row: TenantRow, email: str) -> UserRow:
    for user in row.users:
        if user.email == email.lower():
            return user
    raise NotFoundError("user", f"{row.name}/{email}")


def set_limits(session: Session, actor: Actor, name: str, patch: LimitsPatch) -> TenantRow:
    """Set the tenant's gateway limits (every gateway process applies them within a second)."""
    row = get(session, name)
    before = snapshot(row)
    for field in patch.model_fields_set:
        setattr(row, field, getattr(patch, field))
    audit.record(session, actor, "set_limits", "tenant", row.name, before, snapshot(row))
    return row
