"""The live scheduler: pending work placed by rounds, explained, cancelled, preempted."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from suanli.billing import ledger
from suanli.domain.actor import SYSTEM
from suanli.domain.specs import DataCenterSpec, NodeSpec, TenantSpec
from suanli.domain.workloads import DatasetSpec, WorkloadSpec
from suanli.errors import ConflictError
from suanli.services import (
    billing,
    billing_reports,
    compliance,
    deployments,
    holdings,
    nodes,
    scheduling,
    tenants,
)
from suanli.services import workloads as svc
from suanli.store.tables import AuditRow, NodeRow, WorkloadRow


def _fleet(s: Session) -> None:
    from suanli.services import datacenters

    cost = {"chip": "Ascend 910B", "per_accelerator_hour": "6", "currency": "CNY"}
    datacenters.create(
        s,
        SYSTEM,
        DataCenterSpec(name="bj", country="CN", owner_type="private", costs=[cost]),  # type: ignore[list-item]
    )
    datacenters.create(s, SYSTEM, DataCenterSpec(name="sg", country="SG", owner_type="private"))
    for name, dc, chip, island in (
        ("bj-asc-1", "bj", "Ascend 910B", "hccs-a"),
        ("bj-asc-2", "bj", "Ascend 910B", "hccs-a"),
        ("sg-h100-1", "sg", "H100 SXM", ""),
    ):
        nodes.create(
            s,
            SYSTEM,
            NodeSpec(name=name, data_center=dc, chip=chip, count=8, island=island, state="ready"),
        )
    tenants.create(s, SYSTEM, TenantSpec(name="acme", country="CN", verified=True))
    s.commit()


@pytest.fixture
def factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    with session_factory() as s:
        _fleet(s)
    return session_factory


def _submit(factory: sessionmaker[Session], name: str, **kw: Any) -> None:
    with factory() as s:
        spec = WorkloadSpec(name=name, kind=kw.pop("kind", "training"), **kw)
        _row, verdict = svc.submit(s, SYSTEM, "acme", spec)
        assert (verdict is None) == (spec.node is None)
        s.commit()


def _round(factory: sessionmaker[Session]) -> scheduling.RoundSummary:
    with factory() as s:
        summary = scheduling.schedule_pending(s)
        s.commit()
        return summary


def _row(factory: sessionmaker[Session], name: str) -> WorkloadRow:
    with factory() as s:
        row = svc.get_workload(s, "acme", name)
        s.expunge(row)
        return row


def _held(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as s:
        names = dict(s.execute(select(NodeRow.id, NodeRow.name)).all())
        return {names[i]: n for i, n in holdings.held_by_node(s).items()}


def test_pending_work_is_placed_by_a_round_and_audited(factory: sessionmaker[Session]) -> None:
    _submit(factory, "job", accelerators=4, chips=["Ascend 910B"])
    assert _row(factory, "job").state == "pending"
    assert _row(factory, "job").node_id is None
    summary = _round(factory)
    assert summary.placed == ("acme/job",)
    row = _row(factory, "job")
    assert row.state == "running"
    assert row.chip == "Ascend 910B"
    assert row.started_at is not None
    assert row.placement is not None
    slots = row.placement["slots"]
    assert len(slots) == 1
    assert len(slots[0]["devices"]) == 4
    assert row.explanation is not None
    assert row.explanation["placed"]
    assert _held(factory) == {slots[0]["node"]: 4}
    with factory() as s:
        audit = s.scalars(select(AuditRow).where(AuditRow.resource == "acme/job")).all()
        assert [a.action for a in audit] == ["submit", "start"]
        assert audit[1].actor == "system:scheduler"
        assert audit[1].after is not None
        assert audit[1].after["decisions"]
        why = scheduling.why(s, "acme", "job")
    assert why["state"] == "running"
    assert "score: policy throughput" in why["text"]
    assert _round(factory) == scheduling.RoundSummary()  # nothing left: a no-op


def test_a_gang_larger_than_any_node_waits_and_says_why(factory: sessionmaker[Session]) -> None:
    _submit(factory, "big", accelerators=16, chips=["Ascend 910B"])
    with factory() as s:  # not explained yet: computed live, nothing written
        live = scheduling.why(s, "acme", "big")
    assert live["computed_now"] is True
    assert "topology" in live["text"]
    summary = _round(factory)
    assert summary.pending == ("acme/big",)
    row = _row(factory, "big")
    assert row.state == "pending"
    assert row.explanation is not None
    topo = next(f for f in row.explanation["filters"] if f["filter"] == "topology")
    assert topo["removed"] == 2
    assert "16 must share one node" in topo["reasons"][0]["reason"]
    with factory() as s:
        stored = scheduling.why(s, "acme", "big")
    assert stored["computed_now"] is False
    assert "- topology: removed 2" in stored["text"]
    assert stored["text"].startswith("acme/big (acme: 16 x one of Ascend 910B")


def test_a_gang_over_an_island_spans_two_nodes_and_counts_on_both(
    factory: sessionmaker[Session],
) -> None:
    _submit(factory, "wide", accelerators=12, chips=["Ascend 910B"], topology="island")
    assert _round(factory).placed == ("acme/wide",)
    row = _row(factory, "wide")
    assert row.placement is not None
    assert sorted(s["node"] for s in row.placement["slots"]) == ["bj-asc-1", "bj-asc-2"]
    assert sum(_held(factory).values()) == 12
    assert set(_held(factory)) == {"bj-asc-1", "bj-asc-2"}
    with factory() as s:
        snap = compliance.fleet_snapshot(s)
        assert sum(a.count for a in snap.allocations) == 12
        all_nodes = list(s.scalars(select(NodeRow)))
        free = sum(len(c.free) for c in deployments._capacity(s, all_nodes).values())
        assert free == 24 - 12
        # a node of the placement that is not the first still knows it runs there
        second = next(
            n for n in s.scalars(select(NodeRow)) if n.id != row.node_id and n.name.startswith("bj")
        )
        assert [w.name for w in holdings.workloads_on(s, second.id)] == ["wide"]
        # the operator is owed for all 12 accelerators: one cost line per node
        minute = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
        billing_reports.accrue_minute(s, minute)
        s.commit()
        owed = billing.raw_balances(s, [ledger.payable_account("bj")])
        assert -owed[ledger.payable_account("bj")] == 12 * 100_000  # 6 CNY/h = 0.1 a minute


def test_cancel_frees_the_accelerators_for_waiting_work(factory: sessionmaker[Session]) -> None:
    _submit(factory, "a", accelerators=8, chips=["H100 SXM"])
    _submit(factory, "b", accelerators=8, chips=["H100 SXM"])
    summary = _round(factory)
    assert summary.placed == ("acme/a",)
    assert summary.pending == ("acme/b",)
    assert _row(factory, "b").explanation is not None
    with factory() as s:
        svc.cancel(s, SYSTEM, "acme", "a")
        s.commit()
    assert _row(factory, "a").state == "cancelled"
    assert _round(factory).placed == ("acme/b",)
    assert _held(factory) == {"sg-h100-1": 8}
    with factory() as s, pytest.raises(ConflictError, match="already cancelled"):
        svc.cancel(s, SYSTEM, "acme", "a")


def test_work_on_cn_bound_data_lands_only_in_cn(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        svc.create_dataset(s, SYSTEM, "acme", DatasetSpec(name="cn-data", country="CN"))
        s.commit()
    # the H100 is the fastest chip for this: unbound work goes there ...
    _submit(factory, "free", accelerators=8, kind="fine_tune", model_id="qwen2.5-7b-instruct")
    # ... and work on data bound to China stays in China
    _submit(factory, "bound", accelerators=8, datasets=["cn-data"], kind="fine_tune",
            model_id="qwen2.5-7b-instruct")  # fmt: skip
    assert set(_round(factory).placed) == {"acme/free", "acme/bound"}
    assert _row(factory, "free").chip == "H100 SXM"
    bound = _row(factory, "bound")
    assert bound.placement is not None
    assert bound.placement["parts"] == [["bj", 8]]
    # nowhere left in CN for a second bound job: it waits, and residency says why
    _submit(factory, "bound-2", accelerators=8, datasets=["cn-data"])
    _submit(factory, "bound-3", accelerators=8, datasets=["cn-data"])
    summary = _round(factory)
    assert summary.placed == ("acme/bound-2",)
    expl = _row(factory, "bound-3").explanation
    assert expl is not None
    res = next(f for f in expl["filters"] if f["filter"] == "residency")
    assert res["removed"] == 1
    assert "SG is outside CN" in res["reasons"][0]["reason"]


def test_high_priority_work_preempts_spot(factory: sessionmaker[Session]) -> None:
    _submit(factory, "cheap", accelerators=8, chips=["H100 SXM"], priority="spot")
    assert _round(factory).placed == ("acme/cheap",)
    _submit(factory, "urgent", accelerators=8, chips=["H100 SXM"])
    summary = _round(factory)
    assert summary.placed == ("acme/urgent",)
    assert summary.preempted == ("acme/cheap",)
    cheap = _row(factory, "cheap")
    assert cheap.state == "preempted"
    assert cheap.finished_at is not None
    assert _row(factory, "urgent").state == "running"
    assert _held(factory) == {"sg-h100-1": 8}
    with factory() as s:
        acts = s.scalars(select(AuditRow.action).where(AuditRow.resource == "acme/cheap")).all()
    assert "preempt" in acts


def test_named_node_submission_records_devices_the_scheduler_respects(
    factory: sessionmaker[Session],
) -> None:
    _submit(factory, "pinned", accelerators=6, node="sg-h100-1")
    row = _row(factory, "pinned")
    assert row.state == "running"
    assert row.placement is not None
    assert row.placement["slots"][0]["devices"] == [0, 1, 2, 3, 4, 5]
    _submit(factory, "two", accelerators=2, chips=["H100 SXM"])
    _submit(factory, "three", accelerators=3, chips=["H100 SXM"])
    summary = _round(factory)
    assert summary.placed == ("acme/two",)
    two = _row(factory, "two")
    assert two.placement is not None
    assert two.placement["slots"][0]["devices"] == [6, 7]
    with factory() as s, pytest.raises(ConflictError, match="0 free accelerators"):
        svc.submit(s, SYSTEM, "acme", WorkloadSpec(name="x", kind="training", node="sg-h100-1",
                                                   accelerators=1))  # fmt: skip


@pytest.mark.postgres
def test_concurrent_rounds_never_overcommit_a_node(
    factory: sessionmaker[Session], engine: Any
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks under concurrency: PostgreSQL")
    for i in range(6):
        _submit(factory, f"j{i}", accelerators=4 + (i % 3))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(3):
                _round(factory)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def pin() -> None:
        try:
            _submit(factory, "pinned", accelerators=3, node="bj-asc-1")
        except ConflictError:
            pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)] + [threading.Thread(target=pin)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with factory() as s:
        caps = {n.name: n.accelerator_count for n in s.scalars(select(NodeRow))}
        names = dict(s.execute(select(NodeRow.id, NodeRow.name)).all())
        held = holdings.held_by_node(s)
        running = [w for w in s.scalars(select(WorkloadRow)) if w.state == "running"]
        devices: dict[int, list[int]] = {}
        for w in running:
            for slot in holdings.slots_of(w):
                devices.setdefault(slot.node_id, []).extend(slot.devices or ())
    assert all(n <= caps[names[i]] for i, n in held.items()), held
    assert all(len(d) == len(set(d)) for d in devices.values()), devices
    assert sum(held.values()) >= 16  # the rounds did place work


def test_work_placed_before_the_scheduler_holds_its_count(factory: sessionmaker[Session]) -> None:
    with factory() as s:  # a row as the old submit wrote it: a count, no devices
        node = nodes.get(s, "sg-h100-1")
        acme = tenants.get(s, "acme")
        s.add(
            WorkloadRow(
                tenant_id=acme.id, name="old", kind="training", node_id=node.id,
                data_center_id=node.data_center_id, chip="H100 SXM", accelerators=3,
                domestic=False, state="running", started_at=datetime.now(UTC),
            )
        )  # fmt: skip
        s.commit()
    _submit(factory, "five", accelerators=5, chips=["H100 SXM"])
    _submit(factory, "one-more", accelerators=1, chips=["H100 SXM"])
    assert _round(factory).placed == ("acme/five",)
    five = _row(factory, "five")
    assert five.placement is not None
    assert five.placement["slots"][0]["devices"] == [3, 4, 5, 6, 7]
    assert _held(factory) == {"sg-h100-1": 8}
    with factory() as s:
        why = scheduling.why(s, "acme", "old")
    assert why["explanation"]["outcome"] == "3 x H100 SXM on sg-h100-1"


def test_inconsistent_spot_work_is_held_not_double_booked(
    factory: sessionmaker[Session],
) -> None:
    _submit(factory, "cheap", accelerators=8, chips=["H100 SXM"], priority="spot")
    assert _round(factory).placed == ("acme/cheap",)
    with factory() as s:  # an old count-only row on the same devices: rows disagree
        node = nodes.get(s, "sg-h100-1")
        s.add(
            WorkloadRow(
                tenant_id=tenants.get(s, "acme").id, name="old", kind="training",
                node_id=node.id, data_center_id=node.data_center_id, chip="H100 SXM",
                accelerators=2, domestic=False, state="running", started_at=datetime.now(UTC),
            )
        )  # fmt: skip
        s.commit()
    _submit(factory, "one", accelerators=1, chips=["H100 SXM"])
    summary = _round(factory)
    assert summary.placed == ()
    assert summary.preempted == ()
    assert _row(factory, "cheap").state == "running"
