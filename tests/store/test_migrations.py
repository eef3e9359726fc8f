"""The schema comes from Alembic only: an empty database upgrades to exactly the models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

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
