"""Two API processes at once: the guard and placement hold under concurrent writers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from suanli.domain.actor import SYSTEM
from suanli.domain.specs import DataCenterSpec, NodeSpec, TenantSpec
from suanli.domain.workloads import WorkloadSpec
from suanli.errors import ConflictError, PolicyConflictError
from suanli.services import datacenters, nodes, tenants, workloads
from suanli.store.tables import NodeRow, WorkloadRow


def _two_at_once(
    factory: sessionmaker[Session], work: Callable[[Session, int], None]
) -> list[Exception | None]:
    """Run ``work`` in two sessions; the first holds its transaction open for a while."""
    results: list[Exception | None] = [None, None]

    def run(i: int) -> None:
        with factory() as session:
            try:
                work(session, i)
                if i == 0:
                    time.sleep(0.6)  # still uncommitted while the second one works
                session.commit()
            except Exception as exc:
                session.rollback()
                results[i] = exc

    first = threading.Thread(target=run, args=(0,))
    second = threading.Thread(target=run, args=(1,))
    first.start()
    time.sleep(0.2)
    second.start()
    first.join(20)
    second.join(20)
    return results


def _state_dc(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        datacenters.create(s, SYSTEM, DataCenterSpec(name="bj", country="CN", owner_type="state"))
        nodes.create(
            s,
            SYSTEM,
            NodeSpec(name="asc", data_center="bj", chip="Ascend 910B", count=6, state="ready"),
        )
        nodes.create(
            s,
            SYSTEM,
            NodeSpec(name="gpu", data_center="bj", chip="H100 SXM", count=4, state="ready"),
        )
        s.commit()


def test_concurrent_adds_cannot_break_the_domestic_share(
    session_factory: sessionmaker[Session],
) -> None:
    _state_dc(session_factory)

    def add(session: Session, i: int) -> None:
        nodes.create(
            session, SYSTEM, NodeSpec(name=f"new-{i}", data_center="bj", chip="H100 SXM", count=1)
        )

    results = _two_at_once(session_factory, add)
    assert results[0] is None
    assert isinstance(results[1], PolicyConflictError)
    with session_factory() as s:
        total = s.scalar(
            select(func.sum(NodeRow.accelerator_count)).where(NodeRow.chip == "H100 SXM")
        )
    assert total == 5  # 6 of 11 domestic: still more than half


def test_concurrent_placements_cannot_overcommit_a_node(
    session_factory: sessionmaker[Session],
) -> None:
    _state_dc(session_factory)
    with session_factory() as s:
        tenants.create(s, SYSTEM, TenantSpec(name="acme", country="CN", verified=True))
        s.commit()

    def place(session: Session, i: int) -> None:
        workloads.submit(
            session,
            SYSTEM,
            "acme",
            WorkloadSpec(name=f"w{i}", kind="training", node="asc", accelerators=6),
        )

    results = _two_at_once(session_factory, place)
    assert results[0] is None
    assert isinstance(results[1], ConflictError)
    assert "0 free accelerators" in str(results[1])
    with session_factory() as s:
        assert s.scalar(select(func.sum(WorkloadRow.accelerators))) == 6
