"""/v1/tenants: tenants, their users and API keys."""

from __future__ import annotations

from fastapi import APIRouter, status

from suanli.api.deps import Admin, Caller, DbSession, RowId, require_tenant_access
from suanli.api.wire import CredentialOut, IssuedCredentialOut, TenantOut, UserOut
from suanli.domain.specs import ApiKeySpec, LimitsPatch, TenantSpec, UserSpec
from suanli.services import credentials, tenants

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])


@router.get("")
def list_tenants(session: DbSession, _admin: Admin) -> list[TenantOut]:
    return [TenantOut.of(r) for r in tenants.list_all(session)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_tenant(spec: TenantSpec, session: DbSession, admin: Admin) -> TenantOut:
    row = tenants.create(session, admin, spec)
    session.commit()
    return TenantOut.of(row)


@router.get("/{name}")
def get_tenant(name: str, session: DbSession, caller: Caller) -> TenantOut:
    row = tenants.get(session, name)
    require_tenant_access(caller, row.id)
    return TenantOut.of(row)


@router.post("/{name}/users", status_code=status.HTTP_201_CREATED)
def add_user(name: str, spec: UserSpec, session: DbSession, admin: Admin) -> UserOut:
    user = tenants.add_user(session, admin, name, spec)
    session.commit()
    return UserOut.of(user)


@router.get("/{name}/api-keys")
def list_api_keys(name: str, session: DbSession, caller: Caller) -> list[CredentialOut]:
    require_tenant_access(caller, tenants.get(session, name).id)
    return [CredentialOut.of(r) for r in credentials.list_api_keys(session, name)]


@router.post("/{name}/api-keys", status_code=status.HTTP_201_CREATED)
def create_api_key(
    name: str, spec: ApiKeySpec, session: DbSession, admin: Admin
) -> IssuedCredentialOut:
    row, secret = credentials.issue_api_key(session, admin, name, spec)
    session.commit()
    return IssuedCredentialOut(**CredentialOut.of(row).model_dump(), secret=secret)


@router.delete("/{name}/api-keys/{key_id}")
def revoke_api_key(name: str, key_id: RowId, session: DbSession, admin: Admin) -> CredentialOut:
    row = credentials.revoke(session, admin, key_id, tenant=name)
    session.commit()
    return CredentialOut.of(row)


@router.patch("/{name}/limits")
def set_tenant_limits(name: str, patch: LimitsPatch, session: DbSession, admin: Admin) -> TenantOut:
    row = tenants.set_limits(session, admin, name, patch)
    session.commit()
    return TenantOut.of(row)


@router.patch("/{name}/api-keys/{key_id}/limits")
def set_api_key_limits(
    name: str, key_id: RowId, patch: LimitsPatch, session: DbSession, admin: Admin
) -> CredentialOut:
    row = credentials.set_key_limits(session, admin, name, key_id, patch)
    session.commit()
    return CredentialOut.of(row)
