"""`suanli up` as a user starts it: a real process on 127.0.0.1, driven by the real CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from suanli.agent.runner import default_node_name
from tests.conftest import PG_URL, create_pg_database, drop_pg_database

BIN = Path(sys.executable).parent / "suanli"
EXAMPLE = Path(__file__).parents[2] / "examples" / "fleet-mixed.yaml"
pytestmark = pytest.mark.slow


@dataclass
class Running:
    proc: subprocess.Popen[str]
    server: str
    token: str | None
    banner: str

    def cli(
        self, *args: str, token: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "SUANLI_SERVER": self.server,
            "SUANLI_TOKEN": token or self.token or "",
        }
        done = subprocess.run(
            [str(BIN), *args], env=env, capture_output=True, text=True, timeout=timeout
        )
        if check:
            assert done.returncode == 0, done.stderr + done.stdout
        return done

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.server + path, headers={"authorization": f"Bearer {self.token}"})


def start(home: Path, *extra: str, env: dict[str, str] | None = None) -> Running:
    """Start `suanli up`; its output goes to a file (a pipe nobody reads could fill up)."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"up-{time.monotonic_ns()}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN), "up", "--port", "0", "--home", str(home), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "SUANLI_QUALIFY_TIME_SCALE": "0.05", **(env or {})},
        )
    deadline = time.monotonic() + 30
    banner = ""
    while time.monotonic() < deadline and proc.poll() is None:
        banner = log.read_text()
        if "export SUANLI_SERVER" in banner:
            break
        time.sleep(0.05)
    server = re.search(r"SUANLI_SERVER=(\S+)", banner)
    if not server:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"no banner within 30 s:\n{log.read_text()}")
    token = re.search(r"SUANLI_TOKEN=(\S+)", banner)
    return Running(proc, server.group(1), token.group(1) if token else None, banner)


def stop(running: Running) -> None:
    running.proc.terminate()
    try:
        running.proc.wait(10)
    except subprocess.TimeoutExpired:
        running.proc.kill()
        running.proc.wait(5)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    if request.param == "sqlite":
        yield []
        return
    if not PG_URL:
        pytest.skip("PostgreSQL variant: set SUANLI_TEST_PG_URL (./run test does)")
    url = create_pg_database(PG_URL)
    yield ["--database-url", url]
    drop_pg_database(url)


def wait_for(predicate: object, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_tour(tmp_path: Path, database_args: list[str]) -> None:
    up = start(tmp_path / "home", *database_args)
    try:
        assert up.token
        assert up.token.startswith("sa-")
        assert up.server.startswith("http://127.0.0.1:")
        assert httpx.get(up.server + "/healthz").json()["status"] == "ok"
        assert httpx.get(up.server + "/v1/nodes").status_code == 401
        assert up.get("/openapi.json").json()["info"]["title"] == "suanli control plane"
        me = default_node_name()
        wait_for(lambda: up.get(f"/v1/nodes/{me}").status_code == 200)
        node = up.get(f"/v1/nodes/{me}").json()
        assert (node["data_center"], node["detector"], node["agent_managed"]) == (
            "local",
            "cpu",
            True,
        )
        # the agent qualifies its own node: registered -> qualifying -> ready, by itself
        wait_for(lambda: up.get(f"/v1/nodes/{me}").json()["state"] in ("ready", "quarantined"), 60)
        events = [e["to_state"] for e in reversed(up.get(f"/v1/nodes/{me}/events").json())]
        # ready, or quarantined naming the failed test when this shared machine is too busy
        # for the soak or peer checks; either way the agent moved it by itself
        node = up.get(f"/v1/nodes/{me}").json()
        assert events[:2] == ["registered", "qualifying"]
        assert events[2:] == [node["state"]]
        if node["state"] == "quarantined":
            assert node["state_reason"].startswith("qualification failed: failed: ")
        assert "standard" in up.cli("qualifications", "list", me).stdout

        chips = up.cli("chips").stdout
        assert "Ascend 910B" in chips
        assert "3A090.a" in chips
        applied = up.cli("fleet", "apply", str(EXAMPLE)).stdout
        assert "30 created" in applied
        assert "0 created" in up.cli("fleet", "apply", str(EXAMPLE)).stdout
        assert "sg-h100-01" in up.cli("nodes", "list", "--dc", "sg-jurong").stdout
        bad = up.cli("dc", "create", "x", "--country", "XX", "--owner-type", "state", check=False)
        assert bad.returncode == 1
        assert "field: country" in bad.stderr

        secret = (
            up.cli("tokens", "create", "--kind", "agent", "--name", "edge")
            .stdout.strip()
            .splitlines()[-1]
        )
        agent = up.cli(
            "agent",
            "--once",
            "--name",
            "edge-01",
            "--data-center",
            "nx-zhongwei",
            "--token",
            secret,
        )
        assert "edge-01: registered" in agent.stdout
        assert up.get("/v1/nodes/edge-01").json()["data_center"] == "nx-zhongwei"
        metrics = up.get("/metrics").text
        assert 'suanli_nodes{data_center="nx-zhongwei",state="ready"} 16.0' in metrics
        audit = up.cli("audit", "--resource-type", "node", "--json").stdout
        assert "edge-01" in audit
    finally:
        stop(up)

    again = start(tmp_path / "home", *database_args)
    try:
        assert again.token is None, "a second start must not print a new admin token"
        assert "admin token exists" in again.banner
        again.token = up.token
        assert again.get("/v1/nodes").status_code == 200
    finally:
        stop(again)


def test_silent_agent_goes_down_and_returns(tmp_path: Path) -> None:
    fast = {"SUANLI_HEARTBEAT_TIMEOUT_S": "1.0", "SUANLI_LIVENESS_CHECK_S": "0.2"}
    up = start(tmp_path / "home", "--no-agent", env=fast)
    try:
        up.cli("agent", "--once", "--name", "flaky", "--token", up.token or "")
        wait_for(lambda: up.get("/v1/nodes/flaky").json()["state"] == "down", 10)
        node = up.get("/v1/nodes/flaky").json()
        assert "no heartbeat" in node["state_reason"]
        up.cli("agent", "--once", "--name", "flaky", "--token", up.token or "")
        assert up.get("/v1/nodes/flaky").json()["state"] == "registered"
    finally:
        stop(up)
