"""Request-scoped dependencies: the database session and the authenticated caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session, sessionmaker

from suanli.domain.actor import Actor
from suanli.errors import AuthenticationError, PermissionDeniedError, ValidationError
from suanli.services import credentials
from suanli.settings import Settings


def _session(request: Request) -> Iterator[Session]:
    """One session per request. Handlers commit explicitly after the last write; any
    exception rolls everything back, so a failed request writes nothing."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    session = factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


DbSession = Annotated[Session, Depends(_session)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(_settings)]


def _caller(request: Request, session: DbSession) -> Actor:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("missing credential: send 'Authorization: Bearer <token>'")
    return credentials.authenticate(session, token.strip())


Caller = Annotated[Actor, Depends(_caller)]


def _admin(caller: Caller) -> Actor:
    if caller.kind != "admin":
        raise PermissionDeniedError("this needs the operator's admin token")
    return caller


def _agent(caller: Caller) -> Actor:
    if caller.kind not in ("admin", "agent"):
        raise PermissionDeniedError("this needs a node-agent or admin token")
    return caller


Admin = Annotated[Actor, Depends(_admin)]
# Row ids in paths and cursors: anything larger cannot exist and would overflow the database.
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Cursor = Annotated[int, Query(ge=0, le=2**31 - 1, description="cursor from a previous page")]

OverrideReason = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=2000,
        description="push through a change a domestic-share rule refuses; logged and audited",
    ),
]
AgentCaller = Annotated[Actor, Depends(_agent)]


def require_tenant_access(caller: Actor, tenant_id: int) -> None:
    """Admins see every tenant; a tenant key sees only its own tenant."""
    if caller.kind == "admin":
        return
    if caller.kind == "tenant" and caller.tenant_id == tenant_id:
        return
    raise PermissionDeniedError("this credential may not see that tenant")


async def read_text(request: Request, limit: int, what: str) -> str:
    """The request body as UTF-8 text of at most ``limit`` bytes (YAML documents)."""
    raw = await request.body()
    if len(raw) > limit:
        raise ValidationError(f"{what} is larger than {limit} bytes")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ValidationError(f"{what} must be UTF-8 text") from None
