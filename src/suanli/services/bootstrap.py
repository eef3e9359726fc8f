"""First-start setup of the embedded platform: admin token, local data center, agent token."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.domain.actor import SYSTEM
from suanli.domain.specs import DataCenterSpec, TokenSpec
from suanli.services import credentials, datacenters
from suanli.store.tables import CredentialRow, DataCenterRow
from suanli.store.types import utcnow

LOCAL_DC = "local"
EMBEDDED_AGENT = "embedded-agent"


def ensure_admin(session: Session, force_new: bool = False) -> str | None:
    """Issue the operator admin token on first start (or when asked); None if one exists."""
    if credentials.has_admin(session) and not force_new:
        return None
    _row, secret = credentials.issue_token(
        session, SYSTEM, TokenSpec(name="bootstrap", kind="admin")
    )
    return secret


def ensure_local_data_center(session: Session, country: str) -> None:
    if session.scalar(select(DataCenterRow.id).where(DataCenterRow.name == LOCAL_DC)) is None:
        spec = DataCenterSpec(
            name=LOCAL_DC, country=country, owner_type="private", operator="this machine"
        )
        datacenters.create(session, SYSTEM, spec)


def embedded_agent_token(session: Session) -> str:
    """A fresh token for this process's own agent; earlier ones are revoked."""
    stale = session.scalars(
        select(CredentialRow).where(
            CredentialRow.kind == "agent",
            CredentialRow.name == EMBEDDED_AGENT,
            CredentialRow.revoked_at.is_(None),
        )
    )
    for row in stale:
        row.revoked_at = utcnow()
    _row, secret = credentials.issue_token(
        session, SYSTEM, TokenSpec(name=EMBEDDED_AGENT, kind="agent")
    )
    return secret
