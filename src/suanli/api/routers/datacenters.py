"""/v1/data-centers: data centers and their operator costs."""

from __future__ import annotations

from fastapi import APIRouter, status

from suanli.api.deps import Admin, Caller, DbSession, OverrideReason
from suanli.api.wire import DataCenterOut
from suanli.domain.specs import DataCenterPatch, DataCenterSpec
from suanli.errors import PermissionDeniedError
from suanli.services import datacenters

router = APIRouter(prefix="/v1/data-centers", tags=["data centers"])


@router.get("")
def list_data_centers(session: DbSession, caller: Caller) -> list[DataCenterOut]:
    if caller.kind == "tenant":
        raise PermissionDeniedError("data centers are visible to the operator only")
    counts = datacenters.counts(session)
    return [DataCenterOut.of(r, counts.get(r.id, (0, 0))) for r in datacenters.list_all(session)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_data_center(spec: DataCenterSpec, session: DbSession, admin: Admin) -> DataCenterOut:
    row = datacenters.create(session, admin, spec)
    session.commit()
    return DataCenterOut.of(row, (0, 0))


@router.get("/{name}")
def get_data_center(name: str, session: DbSession, _admin: Admin) -> DataCenterOut:
    row = datacenters.get(session, name)
    return DataCenterOut.of(row, datacenters.counts(session).get(row.id, (0, 0)))


@router.patch("/{name}")
def update_data_center(
    name: str,
    patch: DataCenterPatch,
    session: DbSession,
    admin: Admin,
    override_reason: OverrideReason = None,
) -> DataCenterOut:
    row = datacenters.update(session, admin, name, patch, override_reason)
    session.commit()
    return DataCenterOut.of(row, datacenters.counts(session).get(row.id, (0, 0)))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_data_center(name: str, session: DbSession, admin: Admin) -> None:
    datacenters.delete(session, admin, name)
    session.commit()
