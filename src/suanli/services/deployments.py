"""Deployments: create, scale, delete; place their replicas on nodes; apply agents' reports.

Until the scheduler takes over, placement here is a simple fit: a ready node whose chip's
software stack the engine runs on, with enough free accelerators and enough memory for the
model (``suanli.models.memory``), replicas spread over nodes. A replica that fits nowhere
stays ``pending`` and is placed when a node becomes ready (each heartbeat tries again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from suanli.catalog.chips import load_catalog
from suanli.domain.actor import Actor
from suanli.domain.lifecycle import NodeState
from suanli.domain.serving import (
    DeploymentPatch,
    DeploymentSpec,
    ReplicaOrder,
    ReplicaReport,
)
from suanli.errors import ConflictError, NotFoundError, ValidationError
from suanli.models.catalog import ModelInfo, load_models
from suanli.models.memory import fits_on
from suanli.services import audit, holdings, nodes, tenants
from suanli.store.locks import lock_rows
from suanli.store.tables import DeploymentRow, NodeRow, ReplicaRow, TenantRow

# Which software stacks each engine runs on, and which engine a stack prefers.
ENGINE_STACKS: dict[str, frozenset[str]] = {
    "vllm": frozenset({"CUDA"}),
    "sglang": frozenset({"CUDA"}),
    "vllm-ascend": frozenset({"CANN"}),
    "mindie": frozenset({"CANN"}),
    "llama.cpp": frozenset({"CPU", "CUDA"}),
    "cpu": frozenset({"CPU"}),
}
PREFERENCE: dict[str, tuple[str, ...]] = {
    "CUDA": ("vllm", "sglang", "llama.cpp"),
    "CANN": ("vllm-ascend", "mindie"),
    "CPU": ("cpu", "llama.cpp"),
}
EXTERNAL = "external"  # replicas are servers that run elsewhere, given by URL
LIVE = ("starting", "ready", "backoff", "crashed", "draining")
TP_SIZES = (1, 2, 4, 8, 16)


def stack_of(chip: str | None) -> str:
    if chip is None:
        return "CPU"
    return load_catalog().get(chip).software_stack


def snapshot(row: DeploymentRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "model": row.model,
        "engine": row.engine,
        "replicas": row.replicas,
        "accelerators": row.accelerators,
        "chip": row.chip,
        "precision": row.precision,
        "routing": row.routing,
        "lora": row.lora,
        "state": row.state,
    }


def _choose_engine(model: ModelInfo, spec: DeploymentSpec, stacks: set[str]) -> str:
    if spec.engine is not None:
        if spec.engine not in ENGINE_STACKS:
            known = ", ".join(sorted(ENGINE_STACKS))
            raise ValidationError(f"unknown engine {spec.engine!r}; known: {known}", "engine")
        if spec.engine not in model.engines:
            raise ValidationError(
                f"engine {spec.engine!r} cannot serve {model.id}; it runs on: "
                + ", ".join(model.engines),
                "engine",
            )
        return spec.engine
    for stack in sorted(stacks, key=lambda s: s != "CPU"):
        for engine in PREFERENCE.get(stack, ()):
            if engine in model.engines:
                return engine
    raise ValidationError(
        f"no engine runs {model.id} on {', '.join(sorted(stacks)) or 'this fleet'}; "
        f"it runs on: {', '.join(model.engines)}",
        "engine",
    )


def _fleet_stacks(session: Session, spec: DeploymentSpec) -> set[str]:
    if spec.node is not None:
        return {stack_of(nodes.get(session, spec.node).chip)}
    if spec.chip is not None:
        return {stack_of(spec.chip)}
    chips = session.scalars(select(NodeRow.chip).distinct())
    return {stack_of(c) for c in chips}


def create(session: Session, actor: Actor, spec: DeploymentSpec) -> DeploymentRow:
    model = load_models().get(spec.model)
    name = spec.name or model.id
    if session.scalar(select(DeploymentRow.id).where(DeploymentRow.name == name)) is not None:
        raise ConflictError(f"deployment {name!r} already exists")
    if spec.endpoints is not None:
        return _create_external(session, actor, spec, model, name)
    node = nodes.get(session, spec.node) if spec.node is not None else None
    if spec.chip is not None and node is not None and node.chip != spec.chip:
        raise ValidationError(f"node {node.name!r} has {node.chip or 'no accelerators'}", "chip")
    engine = _choose_engine(model, spec, _fleet_stacks(session, spec))
    if spec.lora and model.kind != "chat":
        raise ValidationError("LoRA adapters need a chat model", "lora")
    if model.kind == "embedding" and spec.routing == "prefix_cache":
        routing = "least_outstanding"  # nothing is cached between embedding requests
    else:
        routing = spec.routing
    tenant_id = tenants.get(session, spec.tenant).id if spec.tenant is not None else None
    row = DeploymentRow(
        name=name,
        model=model.id,
        kind=model.kind,
        engine=engine,
        replicas=spec.replicas,
        accelerators=spec.accelerators if spec.accelerators is not None else -1,
        chip=spec.chip,
        node_id=node.id if node is not None else None,
        precision=spec.precision,
        context_length=spec.context_length,
        model_path=spec.model_path,
        lora=[[a.name, a.path] for a in spec.lora],
        routing=routing,
        tenant_id=tenant_id,
    )
    row.replica_rows = [ReplicaRow(slot=i) for i in range(spec.replicas)]
    session.add(row)
    session.flush()
    audit.record(session, actor, "create", "deployment", name, after=snapshot(row))
    place_pending(session)
    return row


def _create_external(
    session: Session, actor: Actor, spec: DeploymentSpec, model: ModelInfo, name: str
) -> DeploymentRow:
    """A deployment over servers that run already: the gateway routes, meters, limits."""
    endpoints = spec.endpoints or []
    if not endpoints:
        raise ValidationError("give at least one endpoint", "endpoints")
    clash = [
        f
        for f in ("engine", "node", "chip", "accelerators", "model_path")
        if getattr(spec, f) is not None
    ] + (["lora"] if spec.lora else [])
    if clash:
        raise ValidationError(f"{clash[0]} does not apply to external endpoints", clash[0])
    tenant_id = tenants.get(session, spec.tenant).id if spec.tenant is not None else None
    row = DeploymentRow(
        name=name,
        model=model.id,
        kind=model.kind,
        engine=EXTERNAL,
        replicas=len(endpoints),
        accelerators=0,
        precision=spec.precision,
        context_length=spec.context_length,
        lora=[],
        routing=spec.routing,
        tenant_id=tenant_id,
    )
    row.replica_rows = [
        ReplicaRow(slot=i, endpoint=url.rstrip("/"), state="ready")
        for i, url in enumerate(endpoints)
    ]
    session.add(row)
    session.flush()
    audit.record(session, actor, "create", "deployment", name, after=snapshot(row))
    return row


def get(session: Session, name: str) -> DeploymentRow:
    row = session.scalar(
        select(DeploymentRow)
        .where(DeploymentRow.name == name)
        .options(selectinload(DeploymentRow.replica_rows).selectinload(ReplicaRow.node))
    )
    if row is None:
        raise NotFoundError("deployment", name)
    return row


def list_all(session: Session, tenant_id: int | None = None) -> list[DeploymentRow]:
    stmt = (
        select(DeploymentRow)
        .options(selectinload(DeploymentRow.replica_rows).selectinload(ReplicaRow.node))
        .order_by(DeploymentRow.name)
    )
    if tenant_id is not None:
        stmt = stmt.where(
            (DeploymentRow.tenant_id.is_(None)) | (DeploymentRow.tenant_id == tenant_id)
        )
    return list(session.scalars(stmt))


def scale(session: Session, actor: Actor, name: str, patch: DeploymentPatch) -> DeploymentRow:
    """Change the replica count; replicas beyond it drain (finish what they serve) and stop."""
    row = get(session, name)
    if row.state != "active":
        raise ConflictError(f"deployment {name!r} is being deleted")
    if row.engine == EXTERNAL:
        raise ConflictError(f"deployment {name!r} serves fixed endpoints; it does not scale")
    before = snapshot(row)
    running = sorted((r for r in row.replica_rows if r.desired == "run"), key=lambda r: r.slot)
    if patch.replicas > len(running):
        used = {r.slot for r in row.replica_rows}
        free_slots = (s for s in range(len(used) + patch.replicas) if s not in used)
        for _ in range(patch.replicas - len(running)):
            row.replica_rows.append(ReplicaRow(slot=next(free_slots)))
    else:
        for replica in running[patch.replicas :]:
            _drain(session, replica)
    row.replicas = patch.replicas
    session.flush()
    audit.record(session, actor, "scale", "deployment", name, before, snapshot(row))
    place_pending(session)
    return row


def delete(session: Session, actor: Actor, name: str) -> DeploymentRow:
    """Drain every replica; the deployment disappears when the last one has stopped."""
    row = get(session, name)
    before = snapshot(row)
    row.state = "deleting"
    row.replicas = 0
    for replica in list(row.replica_rows):
        _drain(session, replica)
    session.flush()
    audit.record(session, actor, "delete", "deployment", name, before, snapshot(row))
    _drop_if_empty(session, row)
    return row


def _drain(session: Session, replica: ReplicaRow) -> None:
    node_up = replica.node is not None and replica.node.state not in ("down", "retired")
    if replica.node_id is None or not node_up or replica.state in ("stopped", "failed"):
        # pending, external, or on a node that cannot answer: nothing runs to drain
        replica.deployment.replica_rows.remove(replica)
        session.delete(replica)
    else:
        replica.desired = "drain"


def _drop_if_empty(session: Session, row: DeploymentRow) -> None:
    if row.state == "deleting" and not row.replica_rows:
        session.delete(row)
        session.flush()


# --- placement ---------------------------------------------------------------------------


@dataclass
class _Capacity:
    node: NodeRow
    free: list[int]  # free accelerator indexes


def _capacity(session: Session, candidates: Sequence[NodeRow]) -> dict[int, _Capacity]:
    # replicas and placed workloads hold devices by index; older workloads by count (the
    # first free ones): holdings.node_use, which the scheduler reads too
    use = holdings.node_use(session, [n.id for n in candidates])
    return {n.id: _Capacity(n, use[n.id].free(n.accelerator_count)) for n in candidates}


def _needed(dep: DeploymentRow, model: ModelInfo, chip: str | None) -> tuple[int, str]:
    """Accelerators per replica on ``chip`` (0 on CPU), or (-1, why it does not fit)."""
    if chip is None:
        if dep.accelerators > 0:
            return -1, f"needs {dep.accelerators} accelerators"
        return 0, ""
    if dep.accelerators == 0:
        return -1, "the deployment asks for CPU-only replicas"
    counts = (dep.accelerators,) if dep.accelerators > 0 else TP_SIZES
    reason = ""
    for count in counts:
        precision = dep.precision or model.precision
        fit = fits_on(model, chip, count, precision, context_tokens=dep.context_length)
        if fit.fits:
            return count, ""
        reason = fit.reason
    return -1, reason or f"{model.id} does not fit on {chip}"


def place_pending(session: Session) -> int:
    """Give each pending replica a node and devices; returns how many were placed."""
    pending = list(
        session.scalars(
            select(ReplicaRow)
            .join(DeploymentRow, ReplicaRow.deployment_id == DeploymentRow.id)
            .where(
                ReplicaRow.node_id.is_(None),
                ReplicaRow.desired == "run",
                DeploymentRow.engine != EXTERNAL,
            )
            .options(selectinload(ReplicaRow.deployment))
            .order_by(ReplicaRow.id)
        )
    )
    if not pending:
        return 0
    stmt = select(NodeRow).where(NodeRow.state == NodeState.READY.value).order_by(NodeRow.id)
    candidates = list(session.scalars(stmt))
    if not candidates:
        return 0
    lock_rows(session, NodeRow, [n.id for n in candidates])
    capacity = _capacity(session, candidates)
    per_node: dict[tuple[int, int], int] = {}
    for node_id, dep_id in session.execute(
        select(ReplicaRow.node_id, ReplicaRow.deployment_id).where(ReplicaRow.node_id.isnot(None))
    ):
        if node_id is None:
            continue
        key = (node_id, dep_id)
        per_node[key] = per_node.get(key, 0) + 1
    placed = 0
    for replica in pending:
        dep = replica.deployment
        if dep.state != "active":
            continue
        model = load_models().get(dep.model)
        best: tuple[tuple[int, int], _Capacity, int] | None = None
        for cap in capacity.values():
            node = cap.node
            if dep.node_id is not None and node.id != dep.node_id:
                continue
            if dep.chip is not None and node.chip != dep.chip:
                continue
            if stack_of(node.chip) not in ENGINE_STACKS[dep.engine]:
                continue
            need, _why = _needed(dep, model, node.chip)
            if need < 0 or len(cap.free) < need:
                continue
            # spread: fewest replicas of this deployment there, then most free devices
            score = (per_node.get((node.id, dep.id), 0), -len(cap.free))
            if best is None or score < best[0]:
                best = (score, cap, need)
        if best is None:
            continue
        _score, cap, need = best
        replica.node_id = cap.node.id
        replica.devices, cap.free = cap.free[:need], cap.free[need:]
        replica.state = "starting"
        if dep.accelerators < 0:
            dep.accelerators = need
        key = (cap.node.id, dep.id)
        per_node[key] = per_node.get(key, 0) + 1
        placed += 1
    session.flush()
    return placed


def why_pending(session: Session, dep: DeploymentRow) -> list[str]:
    """For a deployment with pending replicas: why each node was passed over."""
    model = load_models().get(dep.model)
    reasons = []
    for node in session.scalars(select(NodeRow).order_by(NodeRow.name)):
        if node.state != NodeState.READY.value:
            reasons.append(f"{node.name}: {node.state}, not ready")
        elif dep.node_id is not None and node.id != dep.node_id:
            reasons.append(f"{node.name}: the deployment is pinned to another node")
        elif dep.chip is not None and node.chip != dep.chip:
            reasons.append(f"{node.name}: has {node.chip or 'no accelerators'}, not {dep.chip}")
        elif stack_of(node.chip) not in ENGINE_STACKS[dep.engine]:
            reasons.append(f"{node.name}: {dep.engine} does not run on {stack_of(node.chip)}")
        else:
            need, why = _needed(dep, model, node.chip)
            free = len(_capacity(session, [node])[node.id].free)
            if need < 0:
                reasons.append(f"{node.name}: {why}")
            elif free < need:
                reasons.append(f"{node.name}: {free} free accelerators, needs {need}")
            else:
                reasons.append(f"{node.name}: fits (placed at the next heartbeat)")
    return reasons


# --- agents ------------------------------------------------------------------------------


def apply_reports(session: Session, node: NodeRow, reports: Sequence[ReplicaReport]) -> None:
    """Record what the node's agent says about its replicas; forget drained ones."""
    mine = {
        r.id: r
        for r in session.scalars(
            select(ReplicaRow)
            .where(ReplicaRow.node_id == node.id)
            .options(selectinload(ReplicaRow.deployment))
        )
    }
    emptied: dict[int, DeploymentRow] = {}
    for report in reports:
        replica = mine.get(report.id)
        if replica is None:
            continue  # deleted meanwhile: the agent stops what it is no longer told to run
        replica.state = report.state
        replica.endpoint = report.endpoint
        replica.restarts = report.restarts
        replica.last_error = report.last_error
        if replica.desired == "drain" and report.state in ("stopped", "failed"):
            dep = replica.deployment
            dep.replica_rows.remove(replica)
            session.delete(replica)
            emptied[dep.id] = dep
    session.flush()
    for dep in emptied.values():
        _drop_if_empty(session, dep)


def orders_for(session: Session, node: NodeRow) -> list[ReplicaOrder]:
    rows = session.scalars(
        select(ReplicaRow)
        .where(ReplicaRow.node_id == node.id)
        .options(selectinload(ReplicaRow.deployment))
        .order_by(ReplicaRow.id)
    )
    out = []
    for replica in rows:
        dep = replica.deployment
        out.append(
            ReplicaOrder(
                id=replica.id,
                deployment=dep.name,
                model=dep.model,
                kind="embedding" if dep.kind == "embedding" else "chat",
                engine=dep.engine,
                model_path=dep.model_path,
                devices=list(replica.devices or []),
                precision=dep.precision,
                context_length=dep.context_length,
                lora=[(a[0], a[1]) for a in dep.lora],
                desired="drain" if replica.desired == "drain" else "run",
            )
        )
    return out


# --- the gateway's view ------------------------------------------------------------------


@dataclass(frozen=True)
class Upstream:
    replica_id: int
    endpoint: str
    node: str
    chip: str


@dataclass(frozen=True)
class Route:
    deployment_id: int
    name: str
    model: str
    kind: str
    routing: str
    tenant_id: int | None
    context_length: int
    created_at: int
    upstreams: tuple[Upstream, ...]


def routes(session: Session) -> dict[str, Route]:
    """Every callable name (deployment and LoRA adapter names) -> its ready replicas."""
    deps = session.scalars(
        select(DeploymentRow)
        .where(DeploymentRow.state == "active")
        .options(selectinload(DeploymentRow.replica_rows).selectinload(ReplicaRow.node))
    )
    catalog = load_models()
    out: dict[str, Route] = {}
    for dep in deps:
        ups = tuple(
            Upstream(
                r.id,
                r.endpoint,
                r.node.name if r.node is not None else EXTERNAL,
                (r.node.chip or "CPU") if r.node is not None else "",
            )
            for r in dep.replica_rows
            if r.state == "ready" and r.desired == "run" and r.endpoint
        )
        route = Route(
            dep.id,
            dep.name,
            dep.model,
            dep.kind,
            dep.routing,
            dep.tenant_id,
            dep.context_length or catalog.get(dep.model).context_length,
            int(dep.created_at.timestamp()),
            ups,
        )
        out[dep.name] = route
        for adapter, _path in dep.lora:
            out.setdefault(adapter, route)
    return out


def tenant_names(session: Session) -> dict[int, str]:
    rows = session.execute(select(TenantRow.id, TenantRow.name))
    return {tenant_id: name for tenant_id, name in rows}  # noqa: C416 (typed rows)
