"""The live scheduler tour, as a user does it: `suanli up`, the mixed example fleet, work
submitted without naming a node, placed by the scheduling loop, listed, explained and
cancelled with the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_up import EXAMPLE, Running, start, stop

pytestmark = pytest.mark.slow


def _workloads(up: Running, state: str | None = None) -> list[dict[str, Any]]:
    args = ["workloads", "list", "acme", "--json"]
    if state is not None:
        args += ["--state", state]
    rows: list[dict[str, Any]] = json.loads(up.cli(*args).stdout)
    return rows


def _wait_running(up: Running, names: set[str], seconds: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:  # over HTTP: a CLI process per poll is slow
        rows = up.get("/v1/tenants/acme/workloads?state=running").json()
        if names <= {r["name"] for r in rows}:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"not placed in {seconds} s: {names}; running: {rows}")


def test_submit_without_a_node_and_the_loop_places_it(tmp_path: Path) -> None:
    up = start(tmp_path / "home", "--no-agent", env={"SUANLI_SCHEDULER_INTERVAL_S": "0.2"})
    try:
        assert "30 created" in up.cli("fleet", "apply", str(EXAMPLE)).stdout
        up.cli("tenants", "create", "acme", "--country", "CN", "--verified")
        up.cli("datasets", "create", "acme", "cn-chat", "--country", "CN")
        nodes = json.loads(up.cli("nodes", "list", "--json").stdout)["nodes"]
        fleet = {n["name"] for n in nodes}

        submitted = up.cli(
            "workloads", "submit", "acme", "pretrain", "--kind", "training",
            "--accelerators", "8", "--chip", "Ascend 910B",
        )  # fmt: skip
        assert "pending" in submitted.stdout
        up.cli(
            "workloads", "submit", "acme", "ft-cn", "--kind", "fine_tune", "--accelerators", "8",
            "--dataset", "cn-chat", "--model", "qwen2.5-7b-instruct",
        )  # fmt: skip
        up.cli(
            "workloads", "submit", "acme", "wide", "--accelerators", "16",
            "--chip", "H800 SXM", "--topology", "island",
        )  # fmt: skip
        up.cli(
            "workloads", "submit", "acme", "huge", "--accelerators", "64",
            "--chip", "H100 SXM",
        )  # fmt: skip

        rows = {r["name"]: r for r in _wait_running(up, {"pretrain", "ft-cn", "wide"})}
        for row in rows.values():
            assert set(row["nodes"]) <= fleet
        assert rows["pretrain"]["chip"] == "Ascend 910B"
        assert rows["ft-cn"]["nodes"][0].startswith(("nx-", "sh-"))  # its data stays in CN
        assert len(rows["wide"]["nodes"]) == 2
        assert all(n.startswith("sh-h800-") for n in rows["wide"]["nodes"])

        shown = up.cli("workloads", "list", "acme").stdout
        assert "running" in shown
        assert rows["pretrain"]["nodes"][0] in shown
        assert "pending" in shown  # huge still waits

        why = up.cli("workloads", "why", "acme", "huge").stdout
        assert "acme/huge" in why
        assert "pending" in why
        assert "topology: removed" in why
        assert "64 must share one node" in why
        placed = up.cli("workloads", "why", "acme", "pretrain").stdout
        assert "score: policy throughput" in placed

        assert "cancelled" in up.cli("workloads", "cancel", "acme", "huge").stdout
        assert [r["name"] for r in _workloads(up, "pending")] == []
        again = up.cli("workloads", "cancel", "acme", "huge", check=False)
        assert again.returncode == 1
        assert "already cancelled" in again.stderr
        up.cli("workloads", "cancel", "acme", "pretrain")
        ended = up.cli("workloads", "why", "acme", "pretrain").stdout
        assert ended.startswith("acme/pretrain is cancelled; it was placed as follows")
    finally:
        stop(up)
