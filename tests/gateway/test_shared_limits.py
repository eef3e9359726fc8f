"""Two gateway processes, one Redis: a key's requests-per-minute limit holds across both."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from suanli.domain.actor import SYSTEM
from suanli.domain.serving import DeploymentSpec
from suanli.domain.specs import ApiKeySpec, TenantSpec
from suanli.services import credentials, deployments, tenants
from suanli.store import migrate
from suanli.store.db import make_engine, make_sessionmaker
from suanli.store.tables import UsageRow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="redis-server (Debian package redis-server) is installed by ./run test",
    ),
]
BIN = Path(sys.executable).parent / "suanli"
RPM = 30

UPSTREAM = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def chat(request):
        body = await request.json()
        return web.json_response({
            "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        })

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    """
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
    for proc in started:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_key_limit_holds_across_two_gateway_processes(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    redis_port, upstream_port = _port(), _port()
    processes.append(
        subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
    )
    processes.append(subprocess.Popen([sys.executable, "-c", UPSTREAM, str(upstream_port)]))
    db_url = f"sqlite:///{tmp_path / 'suanli.db'}"
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with make_sessionmaker(engine)() as s:
        tenants.create(s, SYSTEM, TenantSpec(name="acme", country="CN"))
        _row, key = credentials.issue_api_key(s, SYSTEM, "acme", ApiKeySpec(rpm_limit=RPM))
        deployments.create(
            s,
            SYSTEM,
            DeploymentSpec(
                model="smollm2-135m-instruct",
                name="m",
                endpoints=[f"http://127.0.0.1:{upstream_port}/v1"],
            ),
        )
        s.commit()
    env = {
        **os.environ,
        "SUANLI_HOME": str(tmp_path),
        "SUANLI_DATABASE_URL": db_url,
        "SUANLI_GATEWAY_FLUSH_S": "0.1",
    }
    ports = [_port(), _port()]
    for port in ports:
        processes.append(
            subprocess.Popen(
                [
                    str(BIN),
                    "gateway",
                    "--port",
                    str(port),
                    "--redis-url",
                    f"redis://127.0.0.1:{redis_port}/0",
                ],
                env=env,
            )
        )
    auth = {"authorization": f"Bearer {key}"}
    for port in ports:
        _wait(f"http://127.0.0.1:{port}/v1/models", auth)

    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    statuses: dict[int, list[int]] = {port: [] for port in ports}
    start = time.monotonic()
    with httpx.Client(timeout=10) as client:
        for i in range(2 * RPM):
            port = ports[i % 2]
            r = client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=auth)
            statuses[port].append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert r.headers["x-ratelimit-limit-requests"] == str(RPM)
                assert r.json()["error"]["code"] == "rate_limit_exceeded"
    elapsed = time.monotonic() - start
    admitted = sum(s == 200 for codes in statuses.values() for s in codes)
    refill = int(elapsed * RPM / 60) + 1
    # one bucket for both processes: the burst is the limit (plus what refilled meanwhile);
    # two separate buckets would have admitted all 2 x RPM
    assert RPM <= admitted <= RPM + refill, (admitted, elapsed)
    assert all(200 in codes for codes in statuses.values())  # both served
    assert all(429 in codes for codes in statuses.values())  # and both refused

    deadline = time.monotonic() + 10
    count = 0
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            count = conn.scalar(select(func.count()).select_from(UsageRow)) or 0
        if count >= 2 * RPM:
            break
        time.sleep(0.2)
    assert count == 2 * RPM  # every request, admitted or refused, metered once
    engine.dispose()
