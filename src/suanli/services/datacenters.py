"""Data centers and the operator's cost per accelerator-hour of each chip."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from suanli.domain.actor import Actor
from suanli.domain.money import Money
from suanli.domain.specs import ChipCostSpec, DataCenterPatch, DataCenterSpec
from suanli.errors import ConflictError, NotFoundError
from suanli.services import audit, compliance
from suanli.store.tables import ChipCostRow, DataCenterRow, NodeRow


def snapshot(row: DataCenterRow) -> dict[str, Any]:
    """The row as the audit log and the API see it."""
    return {
        "name": row.name,
        "country": row.country,
        "region": row.region,
        "city": row.city,
        "operator": row.operator,
        "owner_type": row.owner_type,
        "costs": [
            {
                "chip": c.chip,
                "per_accelerator_hour": Money.from_micros(c.amount_micros, c.currency).text,
                "currency": c.currency,
            }
            for c in row.costs
        ],
    }


def get(session: Session, name: str) -> DataCenterRow:
    row = session.scalar(
        select(DataCenterRow)
        .where(DataCenterRow.name == name)
        .options(selectinload(DataCenterRow.costs))
    )
    if row is None:
        raise NotFoundError("data center", name)
    return row


def list_all(session: Session) -> list[DataCenterRow]:
    stmt = (
        select(DataCenterRow)
        .options(selectinload(DataCenterRow.costs))
        .order_by(DataCenterRow.name)
    )
    return list(session.scalars(stmt))


def counts(session: Session) -> dict[int, tuple[int, int]]:
    """data center id -> (nodes, accelerators)."""
    stmt = select(
        NodeRow.data_center_id,
        func.count(NodeRow.id),
        func.coalesce(func.sum(NodeRow.accelerator_count), 0),
    ).group_by(NodeRow.data_center_id)
    return {dc: (int(n), int(a)) for dc, n, a in session.execute(stmt)}


def _cost_rows(costs: list[ChipCostSpec]) -> list[ChipCostRow]:
    return [
        ChipCostRow(
            chip=c.chip,
            amount_micros=Money(c.per_accelerator_hour, c.currency).micros,
            currency=c.currency,
        )
        for c in costs
    ]


def create(session: Session, actor: Actor, spec: DataCenterSpec) -> DataCenterRow:
    if session.scalar(select(DataCenterRow.id).where(DataCenterRow.name == spec.name)) is not None:
        raise ConflictError(f"data center {spec.name!r} already exists")
    row = DataCenterRow(
        name=spec.name,
        country=spec.country,
        region=spec.region,
        city=spec.city,
        operator=spec.operator,
        owner_type=spec.owner_type,
        costs=_cost_rows(spec.costs),
    )
    session.add(row)
    session.flush()
    audit.record(session, actor, "create", "data_center", row.name, after=snapshot(row))
    return row


def update(
    session: Session,
    actor: Actor,
    name: str,
    patch: DataCenterPatch,
    override_reason: str | None = None,
) -> DataCenterRow:
    row = get(session, name)
    subject = f"change of data center {name}"
    with compliance.fleet_guard(session, actor, subject, {name}, override_reason):
        apply_patch(session, actor, row, patch)
    return row


def apply_patch(session: Session, actor: Actor, row: DataCenterRow, patch: DataCenterPatch) -> bool:
    """Change ``row`` as ``patch`` says (no compliance check); True if anything changed."""
    before = snapshot(row)
    for key, value in patch.model_dump(exclude_unset=True, exclude={"costs"}).items():
        if value is not None:
            setattr(row, key, value)
    if patch.costs is not None:
        _replace_costs(session, row, patch.costs)
    after = snapshot(row)
    if after == before:
        return False
    session.flush()
    audit.record(session, actor, "update", "data_center", row.name, before=before, after=after)
    return True


def _replace_costs(session: Session, row: DataCenterRow, costs: list[ChipCostSpec]) -> None:
    wanted = {c.chip: c for c in costs}
    for existing in list(row.costs):
        spec = wanted.pop(existing.chip, None)
        if spec is None:
            row.costs.remove(existing)
            continue
        existing.amount_micros = Money(spec.per_accelerator_hour, spec.currency).micros
        existing.currency = spec.currency
    row.costs.extend(_cost_rows(list(wanted.values())))
    session.flush()


def delete(session: Session, actor: Actor, name: str) -> None:
    row = get(session, name)
    nodes = session.scalar(select(func.count(NodeRow.id)).where(NodeRow.data_center_id == row.id))
    if nodes:
        raise ConflictError(f"data center {name!r} still has {nodes} nodes; remove them first")
    before = snapshot(row)
    session.delete(row)
    session.flush()
    audit.record(session, actor, "delete", "data_center", name, before=before)
