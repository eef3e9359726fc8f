"""The live scheduler: pending workloads placed on the fleet by ``suanli.scheduler``.

``schedule_pending`` runs one round: it locks the nodes (so that two API processes, or a
round and a submission to a named node, cannot both take the same accelerators; on SQLite
the database's write lock serializes them), builds the scheduler's view of the ready fleet
from what running workloads and serving replicas hold, and places the pending work in one
transaction: placements (state ``running``, with every slot), the spot work high-priority
work preempted (state ``preempted``, final: its owner resubmits), and for what still waits
the explanation of why. The API's lifespan runs it every ``scheduler_interval_s``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from suanli.catalog.chips import ChipCatalog, load_catalog
from suanli.domain.actor import Actor
from suanli.domain.lifecycle import NodeState
from suanli.domain.workloads import WorkloadInputs
from suanli.errors import ConflictError, NotFoundError, ValidationError
from suanli.policy.evaluate import evaluate_placement
from suanli.policy.snapshot import Allocation, FleetSnapshot, PlacementView, TenantView
from suanli.scheduler.explain import Explanation, FilterReport, ScoreReport, request_text
from suanli.scheduler.placement import POLICIES, Policy, Scheduler
from suanli.scheduler.workload import (
    WHOLE,
    ChipConstraint,
    ClusterView,
    Kind,
    NodeView,
    Placement,
    Priority,
    Slot,
    Topology,
    Workload,
)
from suanli.services import audit, billing, compliance, holdings, tenants, workloads
from suanli.store.locks import lock_rows
from suanli.store.tables import DataCenterRow, NodeRow, TenantRow, WorkloadRow
from suanli.store.types import utcnow

__all__ = [
    "SCHEDULER",
    "RoundSummary",
    "explanation_of",
    "schedule_pending",
    "why",
]

log = logging.getLogger("suanli.scheduling")

SCHEDULER = Actor("system", "system:scheduler")
# the platform's workload kinds as the scheduler and its perf model know them
KIND = {
    "training": "training",
    "fine_tune": "finetune",
    "inference": "inference",
    "compression": "inference",  # calibration passes: forward work, as inference
    "rental": "rental",
}


@dataclass(frozen=True, slots=True)
class RoundSummary:
    """What one round did, as ``tenant/name``: placed, still pending, preempted."""

    placed: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    preempted: tuple[str, ...] = ()


@dataclass
class _Fleet:
    cluster: ClusterView
    nodes: dict[str, NodeRow]
    spot: dict[str, WorkloadRow]  # running spot work the cluster knows (preemptible), by id


def _policy(policy: str | Policy) -> Policy:
    if isinstance(policy, Policy):
        return policy
    found = POLICIES.get(policy)
    if found is None:
        raise ValidationError(
            f"unknown scheduler policy {policy!r}; one of {', '.join(sorted(POLICIES))}",
            "scheduler_policy",
        )
    return found


def _wid(tenant: str, name: str) -> str:
    return f"{tenant}/{name}"


def _workload(session: Session, row: WorkloadRow, tenant: TenantRow) -> Workload:
    """The scheduler's record of ``row``; residency from its inputs, as at submission."""
    residency = frozenset(row.residency) if row.residency is not None else None
    sources: tuple[str, ...] = ()
    datasets = [i.split(":", 1)[1] for i in row.inputs if i.startswith("dataset:")]
    artifacts = [i.split(":", 1)[1] for i in row.inputs if i.startswith("artifact:")]
    try:
        _d, _a, found = workloads.inputs_of(
            session, tenant, WorkloadInputs(datasets=datasets, artifacts=artifacts)
        )
        residency, sources = found.countries, found.sources
    except NotFoundError:  # an input was removed since: keep the residency it was given
        pass
    return Workload(
        id=_wid(tenant.name, row.name),
        tenant=TenantView(tenant.name, tenant.country, tenant.verified),
        kind=cast(Kind, KIND.get(row.kind, "training")),
        accelerators=row.accelerators,
        chips=ChipConstraint(
            frozenset(row.chip_models), frozenset(row.chip_stacks), row.min_memory_gb
        ),
        gang=row.gang,
        topology=cast(Topology, row.topology),
        priority=cast(Priority, row.priority),
        residency=residency,
        residency_sources=sources,
        model_id=row.model_id,
        precision=row.precision,
        submitted_at=row.submitted_at.timestamp(),
    )


def _running_placement(row: WorkloadRow, wid: str, nodes: dict[int, NodeRow]) -> Placement:
    slots = []
    parts: dict[str, int] = {}
    for s in holdings.slots_of(row):
        node = nodes[s.node_id]
        slots.append(Slot(node.name, tuple(s.devices or ())))
        parts[node.data_center.name] = parts.get(node.data_center.name, 0) + s.count
    return Placement(wid, row.chip or "", tuple(slots), tuple(sorted(parts.items())))


def _fleet(session: Session) -> _Fleet:
    """The scheduler's view: every node with accelerators (the not-ready ones explain), the
    free share of each device after what replicas and running work hold."""
    catalog = load_catalog()
    rows = list(
        session.scalars(
            select(NodeRow)
            .where(NodeRow.chip.is_not(None), NodeRow.accelerator_count > 0)
            .options(selectinload(NodeRow.data_center).selectinload(DataCenterRow.costs))
            .order_by(NodeRow.name)
        )
    )
    by_id = {n.id: n for n in rows}
    currency = billing.price_books(session).at(utcnow()).currency
    ready = {n.id for n in rows if n.state == NodeState.READY.value}
    # running spot work on ready nodes with known devices stays preemptible: the cluster
    # learns it through ``allocate``; everything else is folded into the free shares
    spot: list[tuple[WorkloadRow, TenantRow]] = []
    running = session.execute(
        select(WorkloadRow, TenantRow)
        .join(TenantRow, WorkloadRow.tenant_id == TenantRow.id)
        .where(WorkloadRow.state == "running", WorkloadRow.priority == "spot")
        .order_by(WorkloadRow.id)
    )
    for w, t in running:
        slots = holdings.slots_of(w)
        if slots and all(s.devices is not None and s.node_id in ready for s in slots):
            spot.append((w, t))
    use = holdings.node_use(session, list(by_id))
    held_fixed: set[int] = set()  # spot work that cannot be registered: plain holdings
    while True:
        fixed_use = {i: holdings.NodeUse(set(u.devices), u.counted) for i, u in use.items()}
        for w, _t in spot:  # what the cluster takes again through ``allocate``
            if w.id not in held_fixed:
                for s in holdings.slots_of(w):
                    fixed_use[s.node_id].devices.difference_update(s.devices or ())
        cluster = ClusterView(
            [_node_view(n, fixed_use[n.id], catalog, currency) for n in rows], chips=catalog
        )
        preemptible: dict[str, WorkloadRow] = {}
        failed = None
        for w, t in spot:
            if w.id in held_fixed:
                continue
            wid = _wid(t.name, w.name)
            try:
                cluster.allocate(_workload(session, w, t), _running_placement(w, wid, by_id))
            except (ConflictError, ValidationError) as exc:  # inconsistent rows: hold it fixed
                log.warning("running spot work %s not preemptible this round: %s", wid, exc)
                failed = w.id
                break
            preemptible[wid] = w
        if failed is None:
            return _Fleet(cluster, {n.name: n for n in rows}, preemptible)
        held_fixed.add(failed)


def _node_view(n: NodeRow, use: holdings.NodeUse, catalog: ChipCatalog, currency: str) -> NodeView:
    """``cost_micros`` is the data center's cost in the billing ``currency``; a cost quoted
    in another currency counts as unknown (0): the cost policy compares amounts and the
    platform keeps no exchange rates."""
    chip = n.chip or ""
    spec = catalog.find(chip)
    free = set(use.free(n.accelerator_count))
    return NodeView(
        name=n.name,
        data_center=n.data_center.name,
        country=n.data_center.country,
        chip=chip,
        accelerators=n.accelerator_count,
        island=n.island,
        free_milli=tuple(WHOLE if i in free else 0 for i in range(n.accelerator_count)),
        domestic=bool(spec and spec.domestic_cn),
        cost_micros=next(
            (
                c.amount_micros
                for c in n.data_center.costs
                if c.chip == chip and c.currency == currency
            ),
            0,
        ),
        state=n.state,
    )


def _placed_explanation(
    w: Workload, cluster: ClusterView, p: Placement, policy: str
) -> Explanation:
    where = ", ".join(f"{s.node} {list(s.accelerators)}" for s in p.slots)
    dcs = ", ".join(dc for dc, _ in p.parts)
    return Explanation(
        w.id,
        request_text(w),
        len(cluster.nodes),
        (),
        len(cluster.nodes),
        True,
        f"{p.count} x {p.chip} in {dcs}: {where}",
        ScoreReport(policy, p.score),
    )


def _pending(session: Session) -> list[tuple[WorkloadRow, TenantRow]]:
    stmt = (
        select(WorkloadRow, TenantRow)
        .join(TenantRow, WorkloadRow.tenant_id == TenantRow.id)
        .where(WorkloadRow.state == "pending")
        .order_by(WorkloadRow.submitted_at, WorkloadRow.id)
        .with_for_update(of=WorkloadRow)
        .execution_options(populate_existing=True)
    )
    return [(w, t) for w, t in session.execute(stmt)]


def schedule_pending(
    session: Session,
    *,
    policy: str | Policy = "throughput",
    now: datetime | None = None,
    actor: Actor = SCHEDULER,
) -> RoundSummary:
    """One scheduling round over every pending workload; the caller commits."""
    chosen = _policy(policy)
    now = now or utcnow()
    any_pending = select(WorkloadRow.id).where(WorkloadRow.state == "pending").limit(1)
    if session.scalar(any_pending) is None:  # the common case: no lock taken, nothing written
        return RoundSummary()
    lock_rows(session, NodeRow)  # every node: a round reads them all (see the module doc)
    pending = _pending(session)
    if not pending:
        return RoundSummary()
    lock_rows(session, TenantRow, sorted({t.id for _w, t in pending}))
    fleet = _fleet(session)
    snapshot = compliance.fleet_snapshot(session)
    rules = compliance.active_rules(session)
    by_wid: dict[str, tuple[WorkloadRow, TenantRow, Workload]] = {}
    for row, trow in pending:
        work = _workload(session, row, trow)
        by_wid[work.id] = (row, trow, work)
    scheduler = Scheduler(
        fleet.cluster, rules, snapshot, chosen, class_of=compliance.class_of, now=now.timestamp()
    )
    result = scheduler.schedule_round([w for _r, _t, w in by_wid.values()])
    preempted = []
    for pre in result.preempted:
        victim = fleet.spot.get(pre.victim)
        if victim is None:
            continue
        workloads.lock_workload(session, victim)
        if victim.state != "running":  # cancelled or finished meanwhile: its devices are free
            continue
        victim.state = "preempted"
        victim.finished_at = now
        preempted.append(pre.victim)
        audit.record(
            session,
            actor,
            "preempt",
            "workload",
            pre.victim,
            before={"state": "running"},
            after={"state": "preempted", "by": pre.by},
        )
    if preempted:  # the decisions recorded below count what the victims no longer hold
        session.flush()
        snapshot = compliance.fleet_snapshot(session)
    extra: list[Allocation] = []
    placed = []
    for p in result.placed:
        row, trow, work = by_wid[p.workload]
        _record_placement(session, actor, row, trow, work, p, fleet, snapshot, extra, now)
        row.explanation = _placed_explanation(work, fleet.cluster, p, chosen.name).to_json()
        placed.append(p.workload)
    waiting = []
    for wait in result.pending:
        row, _trow, _work = by_wid[wait.workload]
        if wait.explanation is not None:
            body = wait.explanation.to_json()
            if row.explanation != body:
                row.explanation = body
        waiting.append(wait.workload)
    session.flush()
    return RoundSummary(tuple(placed), tuple(waiting), tuple(preempted))


def _record_placement(
    session: Session,
    actor: Actor,
    row: WorkloadRow,
    trow: TenantRow,
    work: Workload,
    p: Placement,
    fleet: _Fleet,
    snapshot: FleetSnapshot,
    extra: list[Allocation],
    now: datetime,
) -> None:
    first = fleet.nodes[p.slots[0].node]
    spec = load_catalog().find(p.chip)
    row.state = "running"
    row.node_id = first.id
    row.data_center_id = first.data_center_id
    row.chip = p.chip
    if p.count != row.accelerators:  # independent replicas: as many as fit now
        row.accelerators = p.count
    row.domestic = bool(spec and spec.domestic_cn)
    row.placement = holdings.placement_json(
        [(fleet.nodes[s.node].id, s.node, s.accelerators) for s in p.slots], p.parts
    )
    row.started_at = now
    # the compliance decisions, as a submission to a named node records them
    view = workloads.view_of(trow, row.name, row.kind, work.residency, work.residency_sources)
    seen = replace(snapshot, allocations=snapshot.allocations + tuple(extra))
    rules = compliance.active_rules(session)
    decisions: list[dict[str, str]] = []
    for dc, count in p.parts:
        verdict = evaluate_placement(
            view, PlacementView(dc, p.chip, count, first.name), seen, rules, compliance.class_of
        )
        decisions += compliance.as_dicts(list(verdict.decisions))
    extra += [Allocation(trow.name, dc, p.chip, n) for dc, n in p.parts]
    audit.record(
        session,
        actor,
        "start",
        "workload",
        _wid(trow.name, row.name),
        after={
            "nodes": [s.node for s in p.slots],
            "devices": {s.node: list(s.accelerators) for s in p.slots},
            "chip": p.chip,
            "accelerators": p.count,
            "score": dict(p.score),
            "inputs": row.inputs,
            "decisions": decisions,
        },
    )


# --- why ---------------------------------------------------------------------------------


def explanation_of(body: dict[str, Any]) -> Explanation:
    """An ``Explanation`` back from its ``to_json()``."""
    score = body.get("score")
    return Explanation(
        str(body["workload"]),
        str(body["request"]),
        int(body["considered"]),
        tuple(
            FilterReport(
                str(f["filter"]),
                int(f["removed"]),
                tuple((str(r["reason"]), int(r["nodes"])) for r in f["reasons"]),
            )
            for f in body["filters"]
        ),
        int(body["survivors"]),
        bool(body["placed"]),
        str(body["outcome"]),
        None
        if score is None
        else ScoreReport(
            str(score["policy"]),
            tuple((str(k), float(v)) for k, v in dict(score["components"]).items()),
        ),
    )


def why(
    session: Session, tenant: str, name: str, *, policy: str | Policy = "throughput"
) -> dict[str, Any]:
    """Why ``tenant/name`` waits (the filters that removed which nodes, and why), or where it
    runs and its score. Pending work not explained yet is explained now (nothing written)."""
    row = workloads.get_workload(session, tenant, name)
    trow = tenants.get(session, tenant)
    wid = _wid(tenant, name)
    body = row.explanation
    live = False
    if row.state == "pending" and body is None:
        fleet = _fleet(session)
        scheduler = Scheduler(
            fleet.cluster,
            compliance.active_rules(session),
            compliance.fleet_snapshot(session),
            _policy(policy),
            class_of=compliance.class_of,
        )
        body = scheduler.explain(_workload(session, row, trow)).to_json()
        live = True
    elif body is None:  # placed on a named node before explanations were kept, or ended
        names = dict(session.execute(select(NodeRow.id, NodeRow.name)).all())
        where = ", ".join(
            names.get(s.node_id, str(s.node_id))
            + (f" {list(s.devices)}" if s.devices is not None else "")
            for s in holdings.slots_of(row)
        )
        work = _workload(session, row, trow)
        outcome = f"{row.accelerators} x {row.chip} on {where}" if where else "never placed"
        body = Explanation(wid, request_text(work), 0, (), 0, bool(where), outcome).to_json()
    text = explanation_of(body).text()
    return {
        "workload": wid,
        "state": row.state,
        "computed_now": live,
        "explanation": body,
        "text": text,
    }
