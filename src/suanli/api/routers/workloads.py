"""/v1/tenants/{tenant}/datasets, /workloads, /artifacts: residency-bound work and its outputs.

A tenant's own API key may use these for its tenant; the admin token for any tenant.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import select

from suanli.api.deps import Caller, DbSession, require_tenant_access
from suanli.domain.workloads import DatasetSpec, ExportSpec, FinishSpec, WorkloadSpec
from suanli.services import holdings, scheduling, tenants, workloads
from suanli.store.tables import ArtifactRow, DatasetRow, NodeRow, WorkloadRow

WorkloadState = Literal["pending", "running", "finished", "cancelled", "preempted"]

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
    """A workload: its request, and where it runs once placed (``nodes``: every node of
    its placement, the first is ``node``; ``slots``: node and device indices)."""

    name: str
    tenant: str
    kind: str
    state: str
    chip: str | None
    accelerators: int
    node: str | None
    nodes: list[str]
    slots: list[dict[str, Any]]
    request: dict[str, Any]
    inputs: list[str]
    residency: list[str] | None
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    waiting_because: str | None = None
    decisions: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, row: WorkloadRow, tenant: str, node_names: dict[int, str]) -> WorkloadOut:
        slots = [
            {
                "node": s.node or node_names.get(s.node_id, "?"),
                "accelerators": s.count,
                "devices": list(s.devices) if s.devices is not None else None,
            }
            for s in holdings.slots_of(row)
        ]
        waiting = None
        if row.state == "pending" and row.explanation is not None:
            waiting = str(row.explanation.get("outcome", "")) or None
        return cls(
            name=row.name,
            tenant=tenant,
            kind=row.kind,
            state=row.state,
            chip=row.chip,
            accelerators=row.accelerators,
            node=slots[0]["node"] if slots else None,
            nodes=[s["node"] for s in slots],
            slots=slots,
            request=workloads.request_of(row),
            inputs=row.inputs,
            residency=row.residency,
            submitted_at=row.submitted_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            waiting_because=waiting,
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


def _node_names(session: DbSession) -> dict[int, str]:
    return dict(session.execute(select(NodeRow.id, NodeRow.name)).all())


@router.post(
    "/workloads",
    status_code=status.HTTP_201_CREATED,
    responses={202: {"description": "stored pending: the scheduler will place it"}},
)
def submit_workload(
    tenant: str, spec: WorkloadSpec, session: DbSession, caller: Caller, response: Response
) -> WorkloadOut:
    """Submit a workload. With ``node``: placed there now (201), or refused (403, naming
    the rules) where policy forbids it. Without: stored pending (202) until the scheduler
    places it; ``GET .../why`` says why it waits."""
    _access(session, caller, tenant)
    row, verdict = workloads.submit(session, caller, tenant, spec)
    session.commit()
    out = WorkloadOut.of(row, tenant, _node_names(session))
    if verdict is None:
        response.status_code = status.HTTP_202_ACCEPTED
    else:
        out.decisions = [d.to_json() for d in verdict.decisions]
    return out


@router.get("/workloads")
def list_workloads(
    tenant: str,
    session: DbSession,
    caller: Caller,
    state: Annotated[
        WorkloadState | None, Query(description="only workloads in this state")
    ] = None,
) -> list[WorkloadOut]:
    _access(session, caller, tenant)
    names = _node_names(session)
    return [
        WorkloadOut.of(w, t, names) for w, t in workloads.list_workloads(session, tenant, state)
    ]


@router.get("/workloads/{name}")
def get_workload(tenant: str, name: str, session: DbSession, caller: Caller) -> WorkloadOut:
    _access(session, caller, tenant)
    return WorkloadOut.of(
        workloads.get_workload(session, tenant, name), tenant, _node_names(session)
    )


@router.post("/workloads/{name}/cancel")
def cancel_workload(tenant: str, name: str, session: DbSession, caller: Caller) -> WorkloadOut:
    """Cancel pending or running work (running work frees its accelerators); 409 when it
    already ended."""
    _access(session, caller, tenant)
    row = workloads.cancel(session, caller, tenant, name)
    session.commit()
    return WorkloadOut.of(row, tenant, _node_names(session))


@router.get("/workloads/{name}/why")
def why_workload(
    tenant: str, name: str, session: DbSession, caller: Caller, request: Request
) -> dict[str, Any]:
    """Why it waits (the filters that removed which nodes, and why), or where it runs and
    the score it was chosen on. ``text``: the same for people."""
    _access(session, caller, tenant)
    policy = request.app.state.settings.scheduler_policy
    return scheduling.why(session, tenant, name, policy=policy)


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
