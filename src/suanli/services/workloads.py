"""Datasets, workloads placed on nodes, and the artifacts they produce — with residency
carried through lineage and every placement decided by the policy core."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.catalog.chips import load_catalog
from suanli.domain.actor import Actor
from suanli.domain.lifecycle import NodeState
from suanli.domain.workloads import (
    DatasetSpec,
    EvaluateSpec,
    FinishSpec,
    WorkloadInputs,
    WorkloadSpec,
)
from suanli.errors import ConflictError, NotFoundError, PolicyDeniedError, ValidationError
from suanli.models.catalog import load_models
from suanli.policy.evaluate import Verdict, evaluate_placement, where_may_run
from suanli.policy.snapshot import PlacementView, Residency, TenantView, WorkloadView
from suanli.scheduler.workload import ChipConstraint
from suanli.services import audit, compliance, holdings, nodes, tenants
from suanli.store.locks import lock_rows
from suanli.store.tables import (
    ArtifactRow,
    DatasetRow,
    LineageRow,
    NodeRow,
    TenantRow,
    WorkloadRow,
)
from suanli.store.types import utcnow


def create_dataset(session: Session, actor: Actor, tenant: str, spec: DatasetSpec) -> DatasetRow:
    trow = tenants.get(session, tenant)
    exists = select(DatasetRow.id).where(
        DatasetRow.tenant_id == trow.id, DatasetRow.name == spec.name
    )
    if session.scalar(exists) is not None:
        raise ConflictError(f"tenant {tenant!r} already has a dataset {spec.name!r}")
    row = DatasetRow(tenant_id=trow.id, **spec.model_dump())
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "create", "dataset", f"{tenant}/{spec.name}", after=spec.model_dump()
    )
    return row


def list_datasets(session: Session, tenant: str) -> list[DatasetRow]:
    trow = tenants.get(session, tenant)
    stmt = select(DatasetRow).where(DatasetRow.tenant_id == trow.id).order_by(DatasetRow.name)
    return list(session.scalars(stmt))


def list_artifacts(session: Session, tenant: str | None = None) -> list[tuple[ArtifactRow, str]]:
    stmt = (
        select(ArtifactRow, TenantRow.name)
        .join(TenantRow, ArtifactRow.tenant_id == TenantRow.id)
        .order_by(TenantRow.name, ArtifactRow.name)
    )
    if tenant is not None:
        stmt = stmt.where(TenantRow.name == tenant)
    return [(a, t) for a, t in session.execute(stmt)]


def get_artifact(session: Session, tenant: str, name: str) -> ArtifactRow:
    trow = tenants.get(session, tenant)
    row = session.scalar(
        select(ArtifactRow).where(ArtifactRow.tenant_id == trow.id, ArtifactRow.name == name)
    )
    if row is None:
        raise NotFoundError("artifact", f"{tenant}/{name}")
    return row


def lineage(session: Session, artifact: ArtifactRow) -> list[str]:
    """Direct parents of ``artifact`` as "dataset:name" / "artifact:name"."""
    out: list[str] = []
    for edge in session.scalars(select(LineageRow).where(LineageRow.artifact_id == artifact.id)):
        if edge.parent_dataset_id is not None:
            ds = session.get(DatasetRow, edge.parent_dataset_id)
            out.append(f"dataset:{ds.name if ds else '?'}")
        elif edge.parent_artifact_id is not None:
            art = session.get(ArtifactRow, edge.parent_artifact_id)
            out.append(f"artifact:{art.name if art else '?'}")
    return out


def _inputs(
    session: Session, trow: TenantRow, spec: WorkloadInputs
) -> tuple[list[DatasetRow], list[ArtifactRow], Residency]:
    datasets, artifacts = [], []
    for name in spec.datasets:
        ds = session.scalar(
            select(DatasetRow).where(DatasetRow.tenant_id == trow.id, DatasetRow.name == name)
        )
        if ds is None:
            raise NotFoundError("dataset", f"{trow.name}/{name}")
        datasets.append(ds)
    for name in spec.artifacts:
        artifacts.append(get_artifact(session, trow.name, name))
    return datasets, artifacts, residency_of(datasets, artifacts)


def inputs_of(
    session: Session, trow: TenantRow, spec: WorkloadInputs
) -> tuple[list[DatasetRow], list[ArtifactRow], Residency]:
    """The datasets and artifacts ``spec`` names (``NotFoundError`` if one is missing) and
    the residency they impose."""
    return _inputs(session, trow, spec)


def residency_of(datasets: list[DatasetRow], artifacts: list[ArtifactRow]) -> Residency:
    """Intersection of the countries every input is bound to (None: no input is bound)."""
    countries: frozenset[str] | None = None
    sources: list[str] = []
    bound: list[tuple[str, frozenset[str]]] = [
        (f"dataset {d.name}", frozenset({d.country})) for d in datasets
    ]
    bound += [
        (f"artifact {a.name}", frozenset(a.residency)) for a in artifacts if a.residency is not None
    ]
    for source, allowed in bound:
        countries = allowed if countries is None else countries & allowed
        sources.append(source)
    return Residency(countries, tuple(sources))


def view_of(
    trow: TenantRow,
    name: str,
    kind: str,
    countries: frozenset[str] | None,
    sources: tuple[str, ...] = (),
) -> WorkloadView:
    """What the compliance engine sees of a workload."""
    return _view(trow, name, kind, Residency(countries, sources))


def _view(trow: TenantRow, name: str, kind: str, residency: Residency) -> WorkloadView:
    return WorkloadView(TenantView(trow.name, trow.country, trow.verified), name, kind, residency)


def model_id_of(spec_model: str | None) -> str | None:
    """The catalog id of the model a workload names (a 422 naming the field if unknown)."""
    if spec_model is None:
        return None
    models = load_models()
    found = models.find(spec_model)
    if found is None:
        near = models.suggest(spec_model)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise ValidationError(f"unknown model {spec_model!r}{hint}", "model_id")
    return found.id


def request_of(row: WorkloadRow) -> dict[str, Any]:
    """What the workload asks for, as the audit log and the API show it."""
    return {
        "accelerators": row.accelerators,
        "chips": row.chip_models,
        "stacks": row.chip_stacks,
        "min_memory_gb": row.min_memory_gb,
        "gang": row.gang,
        "topology": row.topology,
        "priority": row.priority,
        "model_id": row.model_id,
        "precision": row.precision,
    }


def submit(
    session: Session, actor: Actor, tenant: str, spec: WorkloadSpec
) -> tuple[WorkloadRow, Verdict | None]:
    """Store a workload. With ``spec.node``: placed there now (or refused with the rule);
    without: ``pending``, for the scheduler (the verdict is then ``None``)."""
    trow = tenants.get(session, tenant)
    exists = select(WorkloadRow.id).where(
        WorkloadRow.tenant_id == trow.id, WorkloadRow.name == spec.name
    )
    if session.scalar(exists) is not None:
        raise ConflictError(f"tenant {tenant!r} already has a workload {spec.name!r}")
    datasets, artifacts, residency = _inputs(session, trow, spec)
    row = WorkloadRow(
        tenant_id=trow.id,
        name=spec.name,
        kind=spec.kind,
        accelerators=spec.accelerators,
        domestic=False,
        inputs=[f"dataset:{d.name}" for d in datasets] + [f"artifact:{a.name}" for a in artifacts],
        residency=sorted(residency.countries) if residency.countries is not None else None,
        chip_models=list(dict.fromkeys(spec.chips)),
        chip_stacks=list(dict.fromkeys(spec.stacks)),
        min_memory_gb=spec.min_memory_gb,
        gang=spec.gang,
        topology=spec.topology,
        priority=spec.priority,
        model_id=model_id_of(spec.model_id),
        precision=spec.precision,
        submitted_at=utcnow(),
        state="pending",
    )
    if spec.node is None:
        session.add(row)
        session.flush()
        audit.record(
            session,
            actor,
            "submit",
            "workload",
            f"{tenant}/{spec.name}",
            after={"state": "pending", "inputs": row.inputs, **request_of(row)},
        )
        return row, None
    node = nodes.get(session, spec.node)
    # Lock the node and the tenant (PostgreSQL; held to commit): two submissions cannot both
    # take the last free accelerators, nor both slip under the tenant's quota.
    lock_rows(session, NodeRow, [node.id])
    lock_rows(session, TenantRow, [trow.id])
    if node.chip is None:
        raise ConflictError(f"node {spec.node!r} has no accelerators")
    if NodeState(node.state) is not NodeState.READY:
        raise ConflictError(f"node {spec.node!r} is {node.state}, not ready")
    spec_chip = load_catalog().find(node.chip)
    refusal = ChipConstraint(
        frozenset(row.chip_models), frozenset(row.chip_stacks), row.min_memory_gb
    ).refusal(
        node.chip,
        spec_chip.software_stack if spec_chip else None,
        float(spec_chip.memory_gb) if spec_chip and spec_chip.memory_gb else None,
    )
    if refusal is not None:
        raise ConflictError(f"node {spec.node!r}: {refusal}")
    free = holdings.node_use(session, [node.id])[node.id].free(node.accelerator_count)
    if spec.accelerators > len(free):
        raise ConflictError(
            f"node {spec.node!r} has {len(free)} free accelerators, not {spec.accelerators}"
        )

    dc_name = node.data_center.name
    snap = compliance.fleet_snapshot(session, {dc_name}, tenant_id=trow.id)
    place = PlacementView(dc_name, node.chip, spec.accelerators, node.name)
    verdict = evaluate_placement(
        _view(trow, spec.name, spec.kind, residency),
        place,
        snap,
        compliance.active_rules(session),
        compliance.class_of,
    )
    subject = f"workload {tenant}/{spec.name} on {node.name} ({dc_name})"
    if not verdict.allowed:
        raise PolicyDeniedError(subject, actor.name, compliance.as_dicts(list(verdict.refusals)))
    devices = free[: spec.accelerators]
    row.node_id = node.id
    row.data_center_id = node.data_center_id
    row.chip = node.chip
    row.domestic = spec_chip.domestic_cn if spec_chip else False
    row.placement = holdings.placement_json(
        [(node.id, node.name, devices)], [(dc_name, spec.accelerators)]
    )
    row.state = "running"
    row.started_at = row.submitted_at
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "start",
        "workload",
        f"{tenant}/{spec.name}",
        after={
            "node": node.name,
            "chip": node.chip,
            "accelerators": spec.accelerators,
            "devices": devices,
            "inputs": row.inputs,
            "decisions": compliance.as_dicts(list(verdict.decisions)),
        },
    )
    return row, verdict


def lock_workload(session: Session, row: WorkloadRow) -> WorkloadRow:
    """Lock ``row`` (to commit) and read it again: a scheduler round or another request may
    have changed its state since it was read."""
    lock_rows(session, WorkloadRow, [row.id])
    session.refresh(row)
    return row


def cancel(session: Session, actor: Actor, tenant: str, name: str) -> WorkloadRow:
    """Cancel pending or running work; running work frees its accelerators."""
    row = lock_workload(session, get_workload(session, tenant, name))
    if row.state not in ("pending", "running"):
        raise ConflictError(f"workload {tenant}/{name} is already {row.state}")
    before = row.state
    row.state = "cancelled"
    row.finished_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor,
        "cancel",
        "workload",
        f"{tenant}/{name}",
        before={"state": before},
        after={"state": "cancelled"},
    )
    return row


def get_workload(session: Session, tenant: str, name: str) -> WorkloadRow:
    trow = tenants.get(session, tenant)
    row = session.scalar(
        select(WorkloadRow).where(WorkloadRow.tenant_id == trow.id, WorkloadRow.name == name)
    )
    if row is None:
        raise NotFoundError("workload", f"{tenant}/{name}")
    return row


def list_workloads(
    session: Session, tenant: str | None = None, state: str | None = None
) -> list[tuple[WorkloadRow, str]]:
    stmt = (
        select(WorkloadRow, TenantRow.name)
        .join(TenantRow, WorkloadRow.tenant_id == TenantRow.id)
        .order_by(WorkloadRow.id)
    )
    if tenant is not None:
        stmt = stmt.where(TenantRow.name == tenant)
    if state is not None:
        stmt = stmt.where(WorkloadRow.state == state)
    return [(w, t) for w, t in session.execute(stmt)]


def finish(
    session: Session, actor: Actor, tenant: str, name: str, spec: FinishSpec
) -> list[ArtifactRow]:
    """End a workload; what it produced becomes artifacts bound like its inputs."""
    row = lock_workload(session, get_workload(session, tenant, name))
    if row.state == "pending":
        raise ConflictError(f"workload {tenant}/{name} is pending: it never ran (cancel it)")
    if row.state != "running":
        raise ConflictError(f"workload {tenant}/{name} is already {row.state}")
    trow = tenants.get(session, tenant)
    taken = set(
        session.scalars(
            select(ArtifactRow.name).where(
                ArtifactRow.tenant_id == trow.id,
                ArtifactRow.name.in_([o.name for o in spec.outputs]),
            )
        )
    )
    if taken:
        raise ConflictError(f"tenant {tenant!r} already has artifacts {sorted(taken)}")
    parents_ds = [i.split(":", 1)[1] for i in row.inputs if i.startswith("dataset:")]
    parents_art = [i.split(":", 1)[1] for i in row.inputs if i.startswith("artifact:")]
    datasets, artifacts, _residency = _inputs(
        session, trow, WorkloadInputs(datasets=parents_ds, artifacts=parents_art)
    )
    sources = [f"dataset {d.name}" for d in datasets] + [
        s for a in artifacts if a.residency is not None for s in a.residency_sources
    ]
    row.state = "finished"
    row.finished_at = utcnow()
    made: list[ArtifactRow] = []
    for out in spec.outputs:
        art = ArtifactRow(
            tenant_id=trow.id,
            name=out.name,
            kind=out.kind,
            produced_by=row.id,
            residency=row.residency,
            residency_sources=sorted(set(sources)) if row.residency is not None else [],
        )
        session.add(art)
        session.flush()
        for ds in datasets:
            session.add(LineageRow(artifact_id=art.id, parent_dataset_id=ds.id))
        for parent in artifacts:
            session.add(LineageRow(artifact_id=art.id, parent_artifact_id=parent.id))
        made.append(art)
    session.flush()
    audit.record(
        session,
        actor,
        "finish",
        "workload",
        f"{tenant}/{name}",
        after={
            "outputs": [{"name": a.name, "kind": a.kind, "residency": a.residency} for a in made]
        },
    )
    return made


def check_export(
    session: Session, actor: Actor, tenant: str, name: str, country: str
) -> dict[str, Any]:
    """May artifact ``name`` be moved to ``country``? Refusals raise PolicyDeniedError."""
    art = get_artifact(session, tenant, name)
    rule = compliance.active_rules(session).residency.id
    subject = f"export of artifact {tenant}/{name} to {country}"
    if art.residency is not None and country not in art.residency:
        where = "/".join(art.residency)
        sentence = (
            f"{name} derives from {', '.join(art.residency_sources)} and must stay in {where}"
        )
        raise PolicyDeniedError(
            subject, actor.name, [{"rule": rule, "kind": "residency", "sentence": sentence}]
        )
    audit.record(
        session,
        actor,
        "export_allowed",
        "artifact",
        f"{tenant}/{name}",
        after={"destination": country},
    )
    return {"allowed": True, "rule": rule, "artifact": name, "destination_country": country}


def evaluate(session: Session, spec: EvaluateSpec) -> list[dict[str, Any]]:
    """Dry run: the verdict for every (data center, chip) in the fleet."""
    trow = tenants.get(session, spec.tenant)
    _d, _a, residency = _inputs(session, trow, spec)
    snap = compliance.fleet_snapshot(session, None, tenant_id=trow.id)
    verdicts = where_may_run(
        _view(trow, "dry-run", spec.kind, residency),
        spec.accelerators,
        snap,
        compliance.active_rules(session),
        compliance.class_of,
    )
    out = []
    for (dc, chip), verdict in sorted(verdicts.items()):
        out.append(
            {
                "data_center": dc,
                "country": snap.data_centers[dc].country,
                "chip": chip,
                "allowed": verdict.allowed,
                "sentence": verdict.sentence,
                "decisions": [d.to_json() for d in verdict.decisions],
            }
        )
    return out
