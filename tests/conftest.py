"""Shared fixtures: a migrated database on SQLite and PostgreSQL, and the API over it.

Tests that take ``engine`` (directly or through ``api``) run twice: on SQLite and on the
PostgreSQL server named by $SUANLI_TEST_PG_URL (which ``./run test`` starts). Without that
variable the PostgreSQL variants are skipped with a reason.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from suanli.api.app import create_app
from suanli.services import bootstrap
from suanli.settings import Settings
from suanli.store import migrate
from suanli.store.db import make_engine, make_sessionmaker
from suanli.store.tables import Base

PG_URL = os.environ.get("SUANLI_TEST_PG_URL")


def create_pg_database(server_url: str) -> str:
    """A new, empty database on the test server; returns its URL."""
    name = f"suanli_t_{uuid.uuid4().hex[:12]}"
    url = make_url(server_url)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return url.set(database=name).render_as_string(hide_password=False)


def drop_pg_database(db_url: str) -> None:
    url = make_url(db_url)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL variant: set SUANLI_TEST_PG_URL (./run test does)")
    db_url = create_pg_database(PG_URL)
    yield db_url
    drop_pg_database(db_url)


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


def _truncate(engine: Engine) -> None:
    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[Engine]:
    if request.param == "sqlite":
        db = tmp_path / "suanli.db"
        shutil.copy(sqlite_template, db)
        eng = make_engine(f"sqlite:///{db}")
        yield eng
        eng.dispose()
    else:
        eng = request.getfixturevalue("pg_engine")
        _truncate(eng)
        yield eng


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@dataclass
class Api:
    client: TestClient  # sends the admin token
    anon: TestClient  # sends no credential
    admin_token: str
    sessions: sessionmaker[Session]

    def as_token(self, token: str) -> TestClient:
        c = TestClient(self.client.app, raise_server_exceptions=True)
        c.headers["authorization"] = f"Bearer {token}"
        return c


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", heartbeat_timeout_s=30, heartbeat_interval_s=1)


@pytest.fixture
def api(engine: Engine, settings: Settings) -> Iterator[Api]:
    factory = make_sessionmaker(engine)
    with factory() as session:
        token = bootstrap.ensure_admin(session)
        assert token is not None
        session.commit()
    app = create_app(settings, engine, liveness=False)
    with TestClient(app) as client, TestClient(app) as anon:
        client.headers["authorization"] = f"Bearer {token}"
        yield Api(client, anon, token, factory)
