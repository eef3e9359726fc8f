"""/v1/tenants/{tenant}/datasets, /workloads, /artifacts: residency-bound work and its outputs.

A tenant's own API key may use these for its tenant; the admin token for any tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel

from suanli.api.deps import Caller, DbSession, require_tenant_access
from suanli.domain.workloads import DatasetSpec, ExportSpec, FinishSpec, WorkloadSpec
from suanli.services import tenants, workloads
from suanli.store.tables import ArtifactRow, DatasetRow, WorkloadRow

router = APIRouter(prefix="/v1/tenants/{tenant}", tags=["workloads"])


class DatasetOut(BaseModel):
    name: str
    country: str
    description: str
    created_at: datetime

    @classmethod
    def of(cls, row: DatasetRow) -> DatasetOut:
        return cls(
            name=row.name,
            country=row.country,
            description=row.description,
            created_at=row.created_at,
        )


class WorkloadOut(BaseModel):
    name: str
    tenant: str
    kind: str
    chip: str
    accelerators: int
    inputs: list[str]
    residency: list[str] | None
    state: str
    started_at: datetime
    finished_at: datetime | None
    decisions: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, row: WorkloadRow, tenant: str) -> WorkloadOut:
        return cls(
            name=row.name,
            tenant=tenant,
            kind=row.kind,
            chip=row.chip,
            accelerators=row.accelerators,
            inputs=row.inputs,
            residency=row.residency,
            state=row.state,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


class ArtifactOut(BaseModel):
    name: str
    tenant: str
    kind: str
    residency: list[str] | None
    residency_sources: list[str]
    parents: list[str] | None = None
    created_at: datetime

    @classmethod
    def of(cls, row: ArtifactRow, tenant: str, parents: list[str] | None = None) -> ArtifactOut:
        return cls(
            name=row.name,
            tenant=tenant,
            kind=row.kind,
            residency=row.residency,
            residency_sources=row.residency_sources,
            parents=parents,
            created_at=row.created_at,
        )


def _access(session: DbSession, caller: Caller, tenant: str) -> None:
    require_tenant_access(caller, tenants.get(session, tenant).id)


@router.post("/datasets", status_code=status.HTTP_201_CREATED)
def create_dataset(
    tenant: str, spec: DatasetSpec, session: DbSession, caller: Caller
) -> DatasetOut:
    _access(session, caller, tenant)
    row = workloads.create_dataset(session, caller, tenant, spec)
    session.commit()
    return DatasetOut.of(row)


@router.get("/datasets")
def list_datasets(tenant: str, session: DbSession, caller: Caller) -> list[DatasetOut]:
    _access(session, caller, tenant)
    return [DatasetOut.of(r) for r in workloads.list_datasets(session, tenant)]


@router.post("/workloads", status_code=status.HTTP_201_CREATED)
def submit_workload(
    tenant: str, spec: WorkloadSpec, session: DbSession, caller: Caller
) -> WorkloadOut:
    """Place a workload on a node; refused (403, naming the rules) where policy forbids it."""
    _access(session, caller, tenant)
    row, verdict = workloads.submit(session, caller, tenant, spec)
    session.commit()
    out = WorkloadOut.of(row, tenant)
    out.decisions = [d.to_json() for d in verdict.decisions]
    return out


@router.get("/workloads")
def list_workloads(tenant: str, session: DbSession, caller: Caller) -> list[WorkloadOut]:
    _access(session, caller, tenant)
    return [WorkloadOut.of(w, t) for w, t in workloads.list_workloads(session, tenant)]


@router.post("/workloads/{name}/finish")
def finish_workload(
    tenant: str, name: str, spec: FinishSpec, session: DbSession, caller: Caller
) -> list[ArtifactOut]:
    """End a workload; its outputs become artifacts that inherit its residency."""
    _access(session, caller, tenant)
    made = workloads.finish(session, caller, tenant, name, spec)
    session.commit()
    return [ArtifactOut.of(a, tenant) for a in made]


@router.get("/artifacts")
def list_artifacts(tenant: str, session: DbSession, caller: Caller) -> list[ArtifactOut]:
    _access(session, caller, tenant)
    return [ArtifactOut.of(a, t) for a, t in workloads.list_artifacts(session, tenant)]


@router.get("/artifacts/{name}")
def get_artifact(tenant: str, name: str, session: DbSession, caller: Caller) -> ArtifactOut:
    _access(session, caller, tenant)
    row = workloads.get_artifact(session, tenant, name)
    return ArtifactOut.of(row, tenant, workloads.lineage(session, row))


@router.post("/artifacts/{name}/export")
def export_artifact(
    tenant: str, name: str, spec: ExportSpec, session: DbSession, caller: Caller
) -> dict[str, Any]:
    """May this artifact be downloaded to / moved into ``destination_country``?

    The data plane calls this before any transfer; a refusal is 403 naming the rule."""
    _access(session, caller, tenant)
    result = workloads.check_export(session, caller, tenant, name, spec.destination_country)
    session.commit()
    return result
