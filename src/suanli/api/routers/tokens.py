"""/v1/admin/tokens: the operator's admin tokens and node-agent tokens."""

from __future__ import annotations

from fastapi import APIRouter, status

from suanli.api.deps import Admin, DbSession, RowId
from suanli.api.wire import CredentialOut, IssuedCredentialOut
from suanli.domain.specs import TokenSpec
from suanli.errors import NotFoundError
from suanli.services import credentials

router = APIRouter(prefix="/v1/admin/tokens", tags=["tokens"])


@router.get("")
def list_tokens(session: DbSession, _admin: Admin) -> list[CredentialOut]:
    return [CredentialOut.of(r) for r in credentials.list_tokens(session)]


@router.post("", status_code=status.HTTP_201_CREATED)
def issue_token(spec: TokenSpec, session: DbSession, admin: Admin) -> IssuedCredentialOut:
    row, secret = credentials.issue_token(session, admin, spec)
    session.commit()
    return IssuedCredentialOut(**CredentialOut.of(row).model_dump(), secret=secret)


@router.delete("/{token_id}")
def revoke_token(token_id: RowId, session: DbSession, admin: Admin) -> CredentialOut:
    existing = [r for r in credentials.list_tokens(session) if r.id == token_id]
    if not existing:
        raise NotFoundError("token", str(token_id))
    row = credentials.revoke(session, admin, token_id)
    session.commit()
    return CredentialOut.of(row)
