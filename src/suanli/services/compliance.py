"""Compliance in the live platform: the active rule set, fleet snapshots, and the guard
that refuses fleet changes breaking a domestic-share rule (unless overridden, audited)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from suanli.catalog.chips import load_catalog
from suanli.catalog.export_control import classify, load_export_rules
from suanli.domain.actor import Actor
from suanli.errors import ConflictError, PolicyConflictError
from suanli.policy.evaluate import Decision, check_fleet_change
from suanli.policy.rules import RuleSet, default_rules, default_rules_text, parse_rules
from suanli.policy.snapshot import Allocation, DataCenterView, FleetSnapshot, NodeView
from suanli.services import audit, holdings
from suanli.store.locks import lock_rows
from suanli.store.tables import (
    DataCenterRow,
    NodeRow,
    PolicyDecisionRow,
    RuleSetRow,
    TenantRow,
    WorkloadRow,
)
from suanli.store.types import utcnow


@functools.cache
def class_of(chip: str) -> str:
    """The export-control class of a catalog chip under the packaged rule set."""
    return classify(load_catalog().get(chip), load_export_rules()).export_class


def active_rule_row(session: Session, on: date | None = None) -> RuleSetRow | None:
    on = on or utcnow().date()
    stmt = (
        select(RuleSetRow)
        .where(RuleSetRow.effective_from <= on)
        .order_by(RuleSetRow.effective_from.desc(), RuleSetRow.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def active_rules(session: Session, on: date | None = None) -> RuleSet:
    row = active_rule_row(session, on)
    return parse_rules(row.text) if row is not None else default_rules()


def active_rules_text(session: Session) -> str:
    row = active_rule_row(session)
    return row.text if row is not None else default_rules_text()


def upload_rules(session: Session, actor: Actor, text: str) -> RuleSetRow:
    rules = parse_rules(text)
    if session.scalar(select(RuleSetRow.id).where(RuleSetRow.version == rules.version)):
        raise ConflictError(f"rule set version {rules.version!r} exists; give the new one its own")
    row = RuleSetRow(
        version=rules.version, effective_from=rules.effective_from, text=text, actor=actor.name
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "upload",
        "rule_set",
        rules.version,
        after={"version": rules.version, "effective_from": rules.effective_from.isoformat()},
    )
    return row


def rule_history(session: Session) -> list[RuleSetRow]:
    return list(session.scalars(select(RuleSetRow).order_by(RuleSetRow.id.desc())))


def fleet_snapshot(
    session: Session, data_centers: set[str] | None = None, tenant_id: int | None = None
) -> FleetSnapshot:
    """Data centers (all, or the named), their accelerators, and running allocations.

    Nodes are aggregated in SQL to one ``NodeView`` per (data center, chip), named
    ``"<data center>/<chip>"``: policy needs composition, not node rows, and this keeps a
    guarded write cheap on a fleet of any size.
    """
    dc_stmt = select(DataCenterRow).options(selectinload(DataCenterRow.costs))
    if data_centers is not None:
        dc_stmt = dc_stmt.where(DataCenterRow.name.in_(sorted(data_centers)))
    dcs = {
        r.id: DataCenterView(
            r.name,
            r.country,
            r.owner_type,
            {c.chip: (c.amount_micros, c.currency) for c in r.costs},
        )
        for r in session.scalars(dc_stmt)
    }
    composition = session.execute(
        select(NodeRow.data_center_id, NodeRow.chip, func.sum(NodeRow.accelerator_count))
        .where(NodeRow.data_center_id.in_(list(dcs)), NodeRow.chip.is_not(None))
        .group_by(NodeRow.data_center_id, NodeRow.chip)
        .order_by(NodeRow.data_center_id, NodeRow.chip)
    )
    nodes = tuple(
        NodeView(f"{dcs[d].name}/{chip}", dcs[d].name, chip, int(n)) for d, chip, n in composition
    )
    alloc_stmt = (
        select(TenantRow.name, DataCenterRow.name, WorkloadRow)
        .join(TenantRow, WorkloadRow.tenant_id == TenantRow.id)
        .join(DataCenterRow, WorkloadRow.data_center_id == DataCenterRow.id)
        .where(WorkloadRow.state == "running")
    )
    if tenant_id is not None:
        alloc_stmt = alloc_stmt.where(WorkloadRow.tenant_id == tenant_id)
    allocations = tuple(
        Allocation(t, part_dc, w.chip or "", n)
        for t, dc, w in session.execute(alloc_stmt)
        for part_dc, n in holdings.parts_of(w, dc)  # a gang may span data centers
    )
    return FleetSnapshot({v.name: v for v in dcs.values()}, nodes, allocations)


def log_decisions(
    session: Session,
    subject: str,
    actor: str,
    decisions: list[dict[str, str]],
    override_reason: str = "",
) -> None:
    for d in decisions:
        session.add(
            PolicyDecisionRow(
                subject=subject[:200],
                rule=d["rule"],
                kind=d["kind"],
                sentence=d["sentence"],
                overridden=bool(override_reason),
                override_reason=override_reason,
                actor=actor,
            )
        )


def as_dicts(decisions: list[Decision]) -> list[dict[str, str]]:
    return [{"rule": d.rule, "kind": d.kind, "sentence": d.sentence} for d in decisions]


@contextmanager
def fleet_guard(
    session: Session,
    actor: Actor,
    subject: str,
    data_centers: set[str] | None = None,
    override_reason: str | None = None,
) -> Iterator[None]:
    """Run a fleet change; afterwards refuse it if it breaks a domestic-share rule.

    ``data_centers``: the data centers the change may touch (None: any). A change is refused
    when a covered data center ends in violation and the change did not improve its share.
    With ``override_reason`` it goes through, and the override is logged and audited.
    """
    # Lock the data centers first (held to commit), so two API processes cannot each add a
    # node that alone keeps the share legal.
    ids = None
    if data_centers is not None:
        ids = session.scalars(
            select(DataCenterRow.id).where(DataCenterRow.name.in_(sorted(data_centers)))
        ).all()
    lock_rows(session, DataCenterRow, ids)
    before = fleet_snapshot(session, data_centers)
    yield
    session.flush()
    after = fleet_snapshot(session, data_centers)
    touched = {
        name
        for name, dc in after.data_centers.items()
        if before.data_centers.get(name) != dc or before.nodes_in(name) != after.nodes_in(name)
    }
    checks = check_fleet_change(before, after, touched, active_rules(session), load_catalog())
    refused = [
        {"rule": c.rule.id, "kind": "domestic_share", "sentence": c.sentence()}
        for c in checks
        if c.refused
    ]
    if not refused:
        return
    if not override_reason:
        raise PolicyConflictError(subject, actor.name, refused)
    log_decisions(session, subject, actor.name, refused, override_reason)
    audit.record(
        session,
        actor,
        "policy_override",
        "policy",
        subject,
        after={"rules": [r["rule"] for r in refused], "refusals": refused},
        reason=override_reason,
    )
