"""Admin tokens, node-agent tokens and tenant API keys: issue once, store a digest, revoke."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.domain import secrets
from suanli.domain.actor import Actor
from suanli.domain.specs import ApiKeySpec, LimitsPatch, TokenSpec
from suanli.errors import AuthenticationError, ConflictError, NotFoundError
from suanli.services import audit, tenants
from suanli.store.tables import CredentialRow, TenantRow
from suanli.store.types import utcnow

_KIND_PREFIX = {"admin": "sa", "agent": "sn", "api_key": "sk"}


def issue_token(session: Session, actor: Actor, spec: TokenSpec) -> tuple[CredentialRow, str]:
    issued = secrets.issue(_KIND_PREFIX[spec.kind])
    row = CredentialRow(kind=spec.kind, name=spec.name, prefix=issued.prefix, digest=issued.digest)
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "issue",
        "credential",
        f"{spec.kind}:{row.id}",
        after={"kind": spec.kind, "name": spec.name, "prefix": issued.prefix},
    )
    return row, issued.plaintext


def issue_api_key(
    session: Session, actor: Actor, tenant: str, spec: ApiKeySpec
) -> tuple[CredentialRow, str]:
    trow = tenants.get(session, tenant)
    user_id = tenants.find_user(trow, spec.user).id if spec.user else None
    issued = secrets.issue("sk")
    row = CredentialRow(
        kind="api_key",
        name=spec.name,
        prefix=issued.prefix,
        digest=issued.digest,
        tenant_id=trow.id,
        user_id=user_id,
        allowed_models=list(spec.models) if spec.models is not None else None,
        rpm_limit=spec.rpm_limit,
        tpm_limit=spec.tpm_limit,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "issue",
        "api_key",
        f"{tenant}/{row.id}",
        after={
            "name": spec.name,
            "prefix": issued.prefix,
            "models": row.allowed_models,
            "rpm_limit": row.rpm_limit,
            "tpm_limit": row.tpm_limit,
        },
    )
    return row, issued.plaintext


def list_tokens(session: Session) -> list[CredentialRow]:
    stmt = select(CredentialRow).where(CredentialRow.kind != "api_key").order_by(CredentialRow.id)
    return list(session.scalars(stmt))


def list_api_keys(session: Session, tenant: str) -> list[CredentialRow]:
    trow = tenants.get(session, tenant)
    stmt = (
        select(CredentialRow).where(CredentialRow.tenant_id == trow.id).order_by(CredentialRow.id)
    )
    return list(session.scalars(stmt))


def revoke(
    session: Session, actor: Actor, credential_id: int, tenant: str | None = None
) -> CredentialRow:
    row = session.get(CredentialRow, credential_id)
    if row is None:
        raise NotFoundError("credential", str(credential_id))
    if tenant is not None:
        trow = tenants.get(session, tenant)
        if row.tenant_id != trow.id:
            raise NotFoundError("api key", f"{tenant}/{credential_id}")
    if row.revoked_at is not None:
        raise ConflictError(f"credential {credential_id} is already revoked")
    if row.kind == "admin" and row.id == actor.credential_id:
        raise ConflictError("an admin token cannot revoke itself; use another admin token")
    row.revoked_at = utcnow()
    audit.record(
        session, actor, "revoke", "credential", f"{row.kind}:{row.id}", after={"prefix": row.prefix}
    )
    return row


def authenticate(session: Session, token: str) -> Actor:
    """Resolve a presented token to an Actor, or raise AuthenticationError."""
    row = session.scalar(select(CredentialRow).where(CredentialRow.digest == secrets.digest(token)))
    if row is None or row.revoked_at is not None:
        raise AuthenticationError("invalid or revoked credential")
    if row.kind == "api_key":
        tenant = session.get(TenantRow, row.tenant_id)
        tenant_name = tenant.name if tenant else "?"
        return Actor(
            "tenant",
            f"tenant:{tenant_name}/key-{row.id}",
            row.id,
            row.tenant_id,
            tuple(row.allowed_models) if row.allowed_models is not None else None,
        )
    kind: Literal["admin", "agent"] = "admin" if row.kind == "admin" else "agent"
    label = row.name or str(row.id)
    return Actor(kind, f"{kind}:{label}", row.id)


def has_admin(session: Session) -> bool:
    stmt = select(CredentialRow.id).where(
        CredentialRow.kind == "admin", CredentialRow.revoked_at.is_(None)
    )
    return session.scalar(stmt.limit(1)) is not None


def set_key_limits(
    session: Session, actor: Actor, tenant: str, key_id: int, patch: LimitsPatch
) -> CredentialRow:
    trow = tenants.get(session, tenant)
    row = session.get(CredentialRow, key_id)
    if row is None or row.kind != "api_key" or row.tenant_id != trow.id:
        raise NotFoundError("api key", f"{tenant}/{key_id}")
    before = {"rpm_limit": row.rpm_limit, "tpm_limit": row.tpm_limit}
    for field in patch.model_fields_set:
        setattr(row, field, getattr(patch, field))
    after = {"rpm_limit": row.rpm_limit, "tpm_limit": row.tpm_limit}
    audit.record(session, actor, "set_limits", "api_key", f"{tenant}/{row.id}", before, after)
    return row
