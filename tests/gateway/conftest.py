"""The gateway served for real: uvicorn on 127.0.0.1 in a thread, fake replicas behind it.

``world`` is a migrated database (SQLite and PostgreSQL, through ``engine``) holding a tenant,
an API key and an external deployment ``m`` over one fake replica; ``serve`` starts a
``Gateway`` over it and gives a ``Served`` with the OpenAI client, the usage records and the
fake replicas at hand. The fake replicas share one event loop for the whole session and are
reset for every test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from suanli.domain.actor import SYSTEM
from suanli.domain.serving import DeploymentSpec
from suanli.domain.specs import ApiKeySpec, TenantSpec
from suanli.gateway.app import Gateway
from suanli.services import credentials, deployments, tenants
from suanli.store.db import make_sessionmaker
from suanli.store.tables import UsageRow
from tests.gateway.fake_upstream import FakeUpstream, UpstreamLoop

MODEL = "smollm2-135m-instruct"


def wait_until(predicate: Callable[[], object], seconds: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what or predicate}")
        time.sleep(0.01)


@pytest.fixture(scope="session")
def upstream_loop() -> Iterator[UpstreamLoop]:
    loop = UpstreamLoop()
    loop.start("a")
    loop.start("b")
    yield loop
    loop.close()


@pytest.fixture
def fakes(upstream_loop: UpstreamLoop) -> list[FakeUpstream]:
    """Two fake replicas, ``a`` and ``b``, with their default behaviour and no history."""
    for upstream in upstream_loop.upstreams:
        upstream.reset()
    return upstream_loop.upstreams


@dataclass
class World:
    engine: Engine
    sessions: sessionmaker[Session]
    key: str  # the tenant's API key
    key_id: int
    fakes: list[FakeUpstream]
    replica: int = 0  # the one replica of ``m`` (fake ``a``)

    def deploy(self, name: str, endpoints: list[str] | None, **spec: Any) -> list[int]:
        """Create a deployment; returns its replicas' ids in the order of ``endpoints``."""
        spec = {"model": MODEL, "name": name, "endpoints": endpoints, **spec}
        with self.sessions.begin() as session:
            row = deployments.create(session, SYSTEM, DeploymentSpec(**spec))
            return [r.id for r in sorted(row.replica_rows, key=lambda r: r.slot)]

    def issue_key(self, tenant: str = "acme", **spec: Any) -> tuple[int, str]:
        with self.sessions.begin() as session:
            row, secret = credentials.issue_api_key(session, SYSTEM, tenant, ApiKeySpec(**spec))
            return row.id, secret

    def add_tenant(self, name: str, **spec: Any) -> None:
        with self.sessions.begin() as session:
            tenants.create(session, SYSTEM, TenantSpec(name=name, country="CN", **spec))

    def usage(self) -> list[UsageRow]:
        with self.sessions() as session:
            return list(session.scalars(select(UsageRow).order_by(UsageRow.id)))

    def usage_count(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(UsageRow)) or 0


@pytest.fixture
def world(engine: Engine, fakes: list[FakeUpstream]) -> World:
    w = World(engine, make_sessionmaker(engine), "", 0, fakes)
    w.add_tenant("acme")
    w.key_id, w.key = w.issue_key(name="main")
    (w.replica,) = w.deploy("m", [fakes[0].url])
    return w


class GatewayServer:
    """A Gateway served by uvicorn on 127.0.0.1 (a free port) from a thread."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        config = uvicorn.Config(
            gateway,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_level="warning",
            access_log=False,
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)
        self.url = ""

    def start(self) -> None:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 10, "start")
        assert self.server.started, "the gateway did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "the gateway did not stop"


@dataclass
class Served:
    world: World
    gateway: Gateway
    url: str  # http://127.0.0.1:PORT
    _clients: list[openai.OpenAI] = field(default_factory=list)

    @property
    def fakes(self) -> list[FakeUpstream]:
        return self.world.fakes

    def client(self, key: str | None = None) -> openai.OpenAI:
        c = openai.OpenAI(
            base_url=self.url + "/v1", api_key=key or self.world.key, max_retries=0, timeout=10
        )
        self._clients.append(c)
        return c

    def records(self, expect: int, seconds: float = 5.0) -> list[UsageRow]:
        """The usage records once ``expect`` are in the database; fails on more or fewer.

        The gateway's own flusher is idle in these tests (a long interval): this flushes its
        journal, which holds every record written before its answer was complete."""

        def enough() -> bool:
            self.gateway.journal.flush()
            return self.world.usage_count() >= expect

        wait_until(enough, seconds, f"{expect} usage records")
        rows = self.world.usage()
        assert len(rows) == expect, [(r.endpoint, r.status, r.error_code) for r in rows]
        assert self.gateway.journal.written == expect
        return rows

    def close(self) -> None:
        for c in self._clients:
            c.close()


@pytest.fixture
def serve(world: World, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start a gateway over ``world``; keyword arguments go to ``Gateway``."""
    running: list[tuple[GatewayServer, Served]] = []

    def start(**options: Any) -> Served:
        options = {"key_cache_s": 0.2, "refresh_s": 0.05, "flush_s": 3600.0, **options}
        gateway = Gateway(
            world.sessions, world.engine, tmp_path / f"journal-{len(running)}", **options
        )
        server = GatewayServer(gateway)
        server.start()
        served = Served(world, gateway, server.url)
        running.append((server, served))
        return served

    yield start
    for server, served in running:
        served.close()
        server.stop()


@pytest.fixture
def gw(serve: Callable[..., Served]) -> Served:
    """A gateway with the default options."""
    return serve()
