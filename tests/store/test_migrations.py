"""The schema comes from Alembic only: an empty database upgrades to exactly the models."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, Connection, Engine, MetaData, Table, insert, inspect, text

from suanli.store import migrate
from suanli.store.db import make_engine
from suanli.store.tables import Base
from tests.conftest import PG_URL, create_pg_database, drop_pg_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    if not PG_URL:
        pytest.skip("PostgreSQL variant: set SUANLI_TEST_PG_URL (./run test does)")
    url = create_pg_database(PG_URL)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop_pg_database(url)


def test_upgrade_from_empty_matches_models(empty_engine: Engine) -> None:
    assert migrate.current_revision(empty_engine) is None
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    with empty_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_upgrade_is_repeatable_and_downgrade_empties(empty_engine: Engine) -> None:
    migrate.upgrade(empty_engine)
    migrate.upgrade(empty_engine)
    tables = set(inspect(empty_engine).get_table_names())
    assert {"nodes", "data_centers", "credentials", "audit_events"} <= tables
    migrate.downgrade(empty_engine, "base")
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}


def _insert(conn: Connection, table: str, **values: object) -> None:
    """A row with ``values``; every other non-null column gets a plain value of its type."""
    t = Table(table, MetaData(), autoload_with=conn)
    row = dict(values)
    for col in t.columns:
        if col.name in row or col.nullable or col.primary_key:
            continue
        kind = col.type.python_type if not isinstance(col.type, JSON) else list
        row[col.name] = {
            str: "",
            int: 0,
            bool: False,
            datetime: datetime(2026, 1, 1, tzinfo=UTC),
            list: [],
        }[kind]
    conn.execute(insert(t).values(**row))


def test_workloads_placed_before_the_scheduler_keep_running(empty_engine: Engine) -> None:
    """0006: an existing workload stays running on its node, submitted when it started."""
    migrate.upgrade(empty_engine, "0005")
    started = datetime(2026, 1, 2, tzinfo=UTC)
    with empty_engine.begin() as conn:
        _insert(conn, "data_centers", id=1, name="bj", country="CN", owner_type="state")
        _insert(conn, "nodes", id=1, name="n1", data_center_id=1, chip="H20",
                accelerator_count=8, state="ready")  # fmt: skip
        _insert(conn, "tenants", id=1, name="acme", country="CN", verified=True)
        _insert(conn, "workloads", id=1, tenant_id=1, name="old", kind="training", node_id=1,
                data_center_id=1, chip="H20", accelerators=4, state="running",
                started_at=started)  # fmt: skip
        _insert(conn, "workloads", id=2, tenant_id=1, name="done", kind="training", node_id=1,
                data_center_id=1, chip="H20", accelerators=4, state="finished",
                started_at=started, finished_at=started)  # fmt: skip
        _insert(conn, "artifacts", id=1, tenant_id=1, name="w", kind="weights", produced_by=2)
    migrate.upgrade(empty_engine)
    with empty_engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT state, node_id, submitted_at, started_at, gang, topology, priority,"
                " precision FROM workloads WHERE id = 1"
            )
        ).one()
        # rebuilding the table on SQLite must not touch what points at it
        lineage = conn.execute(text("SELECT produced_by FROM artifacts")).scalar_one()
    assert lineage == 2
    assert row.state == "running"
    assert row.node_id == 1
    assert row.submitted_at == row.started_at
    assert (bool(row.gang), row.topology, row.priority, row.precision) == (
        True,
        "node",
        "high",
        "bf16",
    )
    migrate.downgrade(empty_engine, "0005")
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT produced_by FROM artifacts")).scalar_one() == 2
