"""/v1/deployments, /v1/usage, /v1/catalog/models: what is served, what it was used for.

The OpenAI-compatible paths themselves (/v1/chat/completions, /v1/models, ...) belong to the
gateway (``suanli.gateway``), not to this router.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import BaseModel
from sqlalchemy import select

from suanli.api.deps import Admin, Caller, Cursor, DbSession, require_tenant_access
from suanli.domain.serving import DeploymentPatch, DeploymentSpec
from suanli.models.catalog import ModelInfo, load_models
from suanli.models.memory import plan
from suanli.services import deployments, tenants
from suanli.store.tables import DeploymentRow, ReplicaRow, UsageRow

router = APIRouter(tags=["serving"])


class ReplicaOut(BaseModel):
    id: int
    slot: int
    node: str | None
    devices: list[int]
    state: str
    desired: str
    endpoint: str | None
    restarts: int
    last_error: str

    @classmethod
    def of(cls, row: ReplicaRow) -> ReplicaOut:
        return cls(
            id=row.id,
            slot=row.slot,
            node=row.node.name if row.node is not None else None,
            devices=list(row.devices or []),
            state=row.state,
            desired=row.desired,
            endpoint=row.endpoint,
            restarts=row.restarts,
            last_error=row.last_error,
        )


class DeploymentOut(BaseModel):
    name: str
    model: str
    kind: str
    engine: str
    replicas: int
    ready: int
    accelerators: int | None
    chip: str | None
    precision: str | None
    context_length: int | None
    lora: list[str]
    routing: str
    tenant: str | None
    state: str
    replica_list: list[ReplicaOut]
    pending_reasons: list[str]
    created_at: datetime

    @classmethod
    def of(
        cls, row: DeploymentRow, tenant: str | None = None, reasons: list[str] | None = None
    ) -> DeploymentOut:
        replicas = [ReplicaOut.of(r) for r in row.replica_rows]
        return cls(
            name=row.name,
            model=row.model,
            kind=row.kind,
            engine=row.engine,
            replicas=row.replicas,
            ready=sum(1 for r in replicas if r.state == "ready" and r.desired == "run"),
            accelerators=row.accelerators if row.accelerators >= 0 else None,
            chip=row.chip,
            precision=row.precision,
            context_length=row.context_length,
            lora=[a[0] for a in row.lora],
            routing=row.routing,
            tenant=tenant,
            state=row.state,
            replica_list=replicas,
            pending_reasons=reasons or [],
            created_at=row.created_at,
        )


def _out(session: DbSession, row: DeploymentRow, explain: bool = False) -> DeploymentOut:
    tenant = None
    if row.tenant_id is not None:
        tenant = deployments.tenant_names(session).get(row.tenant_id)
    pending = any(r.node_id is None for r in row.replica_rows) and row.engine != "external"
    reasons = deployments.why_pending(session, row) if explain and pending else []
    return DeploymentOut.of(row, tenant, reasons)


@router.post("/v1/deployments", status_code=status.HTTP_201_CREATED)
def create_deployment(spec: DeploymentSpec, session: DbSession, admin: Admin) -> DeploymentOut:
    row = deployments.create(session, admin, spec)
    session.commit()
    return _out(session, deployments.get(session, row.name), explain=True)


@router.get("/v1/deployments")
def list_deployments(session: DbSession, caller: Caller) -> list[DeploymentOut]:
    tenant_id = None if caller.kind == "admin" else (caller.tenant_id or -1)
    return [_out(session, r) for r in deployments.list_all(session, tenant_id)]


@router.get("/v1/deployments/{name}")
def get_deployment(name: str, session: DbSession, caller: Caller) -> DeploymentOut:
    row = deployments.get(session, name)
    if row.tenant_id is not None:
        require_tenant_access(caller, row.tenant_id)
    return _out(session, row, explain=True)


@router.patch("/v1/deployments/{name}")
def scale_deployment(
    name: str, patch: DeploymentPatch, session: DbSession, admin: Admin
) -> DeploymentOut:
    deployments.scale(session, admin, name, patch)
    session.commit()
    return _out(session, deployments.get(session, name), explain=True)


@router.delete("/v1/deployments/{name}")
def delete_deployment(name: str, session: DbSession, admin: Admin) -> dict[str, str]:
    row = deployments.delete(session, admin, name)
    session.commit()
    gone = session.scalar(select(DeploymentRow.id).where(DeploymentRow.name == name)) is None
    return {"name": row.name, "state": "deleted" if gone else "draining"}


# --- usage -------------------------------------------------------------------------------


class UsageOut(BaseModel):
    id: int
    request_id: str
    tenant: str | None
    credential_id: int
    endpoint: str
    model: str
    deployment_id: int | None
    replica_id: int | None
    node: str
    chip: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    status: int
    outcome: str
    error_code: str
    latency_ms: float
    ttft_ms: float | None
    attempts: int
    started_at: datetime
    finished_at: datetime


def _usage_out(row: UsageRow, names: dict[int, str]) -> UsageOut:
    return UsageOut(
        id=row.id,
        request_id=row.request_id,
        tenant=names.get(row.tenant_id),
        credential_id=row.credential_id,
        endpoint=row.endpoint,
        model=row.model,
        deployment_id=row.deployment_id,
        replica_id=row.replica_id,
        node=row.node,
        chip=row.chip,
        stream=row.stream,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cached_tokens=row.cached_tokens,
        status=row.status,
        outcome=row.outcome,
        error_code=row.error_code,
        latency_ms=row.latency_us / 1000,
        ttft_ms=row.ttft_us / 1000 if row.ttft_us is not None else None,
        attempts=row.attempts,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


@router.get("/v1/usage")
def list_usage(
    session: DbSession,
    caller: Caller,
    tenant: Annotated[str | None, Query(max_length=63)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    after: Cursor = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[UsageOut]:
    """Usage records in id order (page with ``after``); a tenant key sees its own only."""
    stmt = select(UsageRow).where(UsageRow.id > after).order_by(UsageRow.id).limit(limit)
    if tenant is not None:
        trow = tenants.get(session, tenant)
        require_tenant_access(caller, trow.id)
        stmt = stmt.where(UsageRow.tenant_id == trow.id)
    elif caller.kind != "admin":
        stmt = stmt.where(UsageRow.tenant_id == (caller.tenant_id or -1))
    if model is not None:
        stmt = stmt.where(UsageRow.model == model)
    if request_id is not None:
        stmt = stmt.where(UsageRow.request_id == request_id)
    if since is not None:
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        stmt = stmt.where(UsageRow.started_at >= since)
    names = deployments.tenant_names(session)
    return [_usage_out(r, names) for r in session.scalars(stmt)]


# --- model catalog -----------------------------------------------------------------------


def _model_out(m: ModelInfo) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "family": m.family,
        "kind": m.kind,
        "architecture": m.architecture,
        "params": m.params,
        "active_params": m.active_params,
        "context_length": m.context_length,
        "precision": m.precision,
        "kv_bytes_per_token": m.kv_bytes_per_token(),
        "engines": list(m.engines),
        "local": m.local is not None,
        "hf_repo": m.hf_repo,
        "licence": m.licence,
    }


@router.get("/v1/catalog/models")
def list_catalog_models(_caller: Caller) -> list[dict[str, Any]]:
    return [_model_out(m) for m in load_models().all()]


@router.get("/v1/catalog/models/{model_id}/plan")
def plan_model(
    model_id: str,
    _caller: Caller,
    precision: Annotated[str | None, Query(max_length=16)] = None,
    context: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> list[dict[str, Any]]:
    """Which chips, how many, at which precision can serve the model."""
    model = load_models().get(model_id)
    fits = plan(model, precision=precision, context_tokens=context)
    return [
        {
            "chip": f.chip_model,
            "vendor": f.vendor,
            "domestic": f.domestic,
            "precision": f.precision,
            "count": f.count,
            "per_device_bytes": f.per_device_bytes,
            "device_memory_bytes": f.device_memory_bytes,
            "engines": list(f.engines),
            "fits": f.fits,
            "reason": f.reason,
        }
        for f in fits
    ]
