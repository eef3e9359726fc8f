"""Qualification wired into the lifecycle: the agent qualifies its node by itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from suanli.agent.detect import HostInfo
from suanli.agent.runner import Agent, AgentConfig
from suanli.client import ApiClient
from suanli.qualify.backends import NumpyBackend
from suanli.qualify.faults import BitFlips, FaultyBackend
from suanli.qualify.model import Measurement, QualificationReport
from tests.conftest import Api
from tests.qualify.conftest import tolerant_thresholds

SCALE = 0.02  # "standard" in about a second


def cpu_host() -> HostInfo:
    return HostInfo(
        hostname="cpu-box",
        cpu_model="test CPU",
        cpu_cores=2,
        memory_mb=8192,
        detector="cpu",
        devices=(),
    )


@pytest.fixture
def dc(api: Api) -> str:
    api.client.post(
        "/v1/data-centers", json={"name": "lab", "country": "CN", "owner_type": "private"}
    )
    return "lab"


def make_agent(api: Api, backend: Any = None, name: str = "box-1") -> Agent:
    token = api.client.post("/v1/admin/tokens", json={"kind": "agent"}).json()["secret"]
    client = ApiClient("http://testserver", token, http=TestClient(api.client.app))
    config = AgentConfig(name=name, data_center="lab", interval_s=0.05, qualify_time_scale=SCALE)
    suite = backend or (lambda: NumpyBackend(2))
    return Agent(client, config, cpu_host, suite_backend=suite, thresholds=tolerant_thresholds())


def states(api: Api, node: str) -> list[str]:
    return [e["to_state"] for e in reversed(api.client.get(f"/v1/nodes/{node}/events").json())]


def test_new_node_qualifies_itself_to_ready(api: Api, dc: str) -> None:
    agent = make_agent(api)
    agent.register()
    agent.wait_for_suite(60)
    assert agent.suite_error is None
    assert states(api, "box-1") == ["registered", "qualifying", "ready"], api.client.get(
        "/v1/nodes/box-1"
    ).json()["state_reason"]
    runs = api.client.get("/v1/nodes/box-1/qualifications").json()
    assert len(runs) == 1
    assert runs[0]["passed"] is True
    assert runs[0]["level"] == "standard"
    detail = api.client.get(f"/v1/qualifications/{runs[0]['id']}").json()
    tests = {m["test"] for m in detail["report"]["measurements"]}
    assert {"matmul", "memory_integrity", "soak"} <= {
        t.split("_")[0] if t.startswith("matmul") else t for t in tests
    }
    html = api.client.get(f"/v1/qualifications/{runs[0]['id']}/report.html")
    assert "data:image/png;base64," in html.text


def test_bad_memory_quarantines_with_the_test_named(api: Api, dc: str) -> None:
    agent = make_agent(api, lambda: FaultyBackend(NumpyBackend(2), [BitFlips(device=1, count=4)]))
    agent.register()
    agent.wait_for_suite(60)
    node = api.client.get("/v1/nodes/box-1").json()
    assert node["state"] == "quarantined"
    assert "memory_integrity" in node["state_reason"]
    assert "cpu:1" in node["state_reason"]


def _report(passed: bool, level: str = "quick") -> dict[str, Any]:
    now = datetime.now(UTC)
    status = "passed" if passed else "failed"
    m = Measurement(
        "runtime",
        "cpu:0",
        "max abs error",
        0.0 if passed else 3.0,
        "",
        0.0,
        "max abs error <= 0",
        status,
    )
    report = QualificationReport(level, "numpy", None, ("cpu:0",), now, now, (m,))  # type: ignore[arg-type]
    return report.to_json()


def test_failed_health_check_drains_an_idle_ready_node(api: Api, dc: str) -> None:
    api.client.post("/v1/nodes", json={"name": "n", "data_center": dc, "state": "ready"})
    ok = api.client.post(
        "/v1/nodes/n/qualifications", json={"kind": "health", "report": _report(True)}
    )
    assert ok.json()["node_state"] == "ready"
    bad = api.client.post(
        "/v1/nodes/n/qualifications", json={"kind": "health", "report": _report(False)}
    )
    assert bad.status_code == 201
    assert bad.json()["node_state"] == "draining"
    assert "runtime" in api.client.get("/v1/nodes/n").json()["state_reason"]


def test_health_check_is_due_only_when_idle_and_stale(api: Api, dc: str, settings: Any) -> None:
    agent = make_agent(api)
    agent.config.qualify = False
    agent.register()
    for state in ("qualifying", "ready"):
        api.client.post("/v1/nodes/box-1/state", json={"state": state, "reason": "test"})
    beat = {"node": "box-1", "devices": []}
    assert api.client.post("/v1/agent/heartbeat", json=beat).json()["health_check_due"] is True
    api.client.post(
        "/v1/nodes/box-1/qualifications", json={"kind": "health", "report": _report(True)}
    )
    assert api.client.post("/v1/agent/heartbeat", json=beat).json()["health_check_due"] is False


def test_acceptance_needs_qualifying_and_a_real_report(api: Api, dc: str) -> None:
    api.client.post("/v1/nodes", json={"name": "n", "data_center": dc, "state": "ready"})
    r = api.client.post(
        "/v1/nodes/n/qualifications",
        json={"kind": "acceptance", "report": _report(True, "standard")},
    )
    assert r.status_code == 409
    api.client.post("/v1/nodes", json={"name": "m", "data_center": dc})
    assert api.client.post("/v1/nodes/m/qualification/start").json()["state"] == "qualifying"
    r = api.client.post(
        "/v1/nodes/m/qualifications", json={"kind": "acceptance", "report": {"level": "standard"}}
    )
    assert r.status_code == 422
    assert r.json()["error"]["param"].startswith("report")
    quick = api.client.post(
        "/v1/nodes/m/qualifications", json={"kind": "acceptance", "report": _report(True)}
    )
    assert quick.json()["node_state"] == "qualifying"  # a quick pass proves too little
    std = api.client.post(
        "/v1/nodes/m/qualifications",
        json={"kind": "acceptance", "report": _report(True, "standard")},
    )
    assert std.json()["node_state"] == "ready"


def _h20_report(gflops: float, passed: bool = True) -> dict[str, Any]:
    now = datetime.now(UTC)
    ms = (
        Measurement(
            "matmul_bf16",
            "cuda:0",
            "throughput",
            gflops,
            "TFLOPS",
            74.0,
            "throughput >= 74 TFLOPS",
            "passed" if passed else "failed",
        ),
        Measurement(
            "memory_bandwidth",
            "cuda:0",
            "bandwidth",
            3500.0,
            "GB/s",
            2400.0,
            "bandwidth >= 2400 GB/s",
            "passed",
        ),
    )
    return QualificationReport("standard", "cuda", "H20", ("cuda:0",), now, now, ms).to_json()


def test_compare_nodes_of_one_chip_and_calibration(api: Api, dc: str) -> None:
    from sqlalchemy import select

    from suanli.store.tables import CalibrationRow

    for name, tflops in (("h20-a", 140.0), ("h20-b", 60.0)):
        api.client.post(
            "/v1/nodes", json={"name": name, "data_center": dc, "chip": "H20", "count": 1}
        )
        api.client.post(f"/v1/nodes/{name}/qualification/start")
        r = api.client.post(
            f"/v1/nodes/{name}/qualifications",
            json={"kind": "acceptance", "report": _h20_report(tflops, tflops > 74)},
        )
        assert r.status_code == 201
    rows = api.client.get("/v1/qualifications/compare", params={"chip": "h20"}).json()
    assert [(r["node"], r["passed"]) for r in rows] == [("h20-a", True), ("h20-b", False)]
    assert rows[0]["metrics"]["throughput [TFLOPS]"] == 140.0
    assert api.client.get("/v1/nodes/h20-b").json()["state"] == "quarantined"
    with api.sessions() as s:
        cal = {
            (c.metric, c.value)
            for c in s.scalars(select(CalibrationRow).where(CalibrationRow.chip == "H20"))
        }
    assert ("throughput", 140.0) in cal
    assert ("bandwidth", 3500.0) in cal
    assert api.client.get("/v1/qualifications/compare", params={"chip": "H2O"}).status_code == 422
