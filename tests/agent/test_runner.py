"""The agent against the real API: register from recorded hardware, heartbeat, down and back."""

from __future__ import annotations

import threading
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from suanli.agent.detect import HostInfo, detect_host
from suanli.agent.runner import Agent, AgentConfig, default_node_name
from suanli.client import ApiClient, ApiError
from suanli.services import agents
from suanli.store.types import utcnow
from tests.conftest import Api

FIXTURES = Path(__file__).parent / "fixtures"


def recorded(outputs: dict[tuple[str, ...], str], proc: Path) -> HostInfo:
    return detect_host(
        runner=outputs.get, nvml=None, proc_root=proc, order=("nvidia-smi", "npu-smi")
    )


def atlas() -> HostInfo:
    text = (FIXTURES / "atlas800-910b" / "npu-smi-info.txt").read_text()
    return recorded({("npu-smi", "info"): text}, FIXTURES / "atlas800-910b")


@pytest.fixture
def dc(api: Api) -> str:
    api.client.post(
        "/v1/data-centers", json={"name": "nx", "country": "CN", "owner_type": "private"}
    )
    return "nx"


def make_agent(api: Api, name: str, detect: object = atlas, data_center: str = "nx") -> Agent:
    token = api.client.post("/v1/admin/tokens", json={"kind": "agent", "name": name}).json()[
        "secret"
    ]
    http = TestClient(api.client.app)
    client = ApiClient("http://testserver", token, http=http)
    config = AgentConfig(name=name, data_center=data_center, interval_s=0.05, qualify=False)
    return Agent(client, config, detect)  # type: ignore[arg-type]


def test_atlas_registers_as_eight_910b(api: Api, dc: str) -> None:
    agent = make_agent(api, "atlas-01")
    assert agent.register() == "registered"
    node = api.client.get("/v1/nodes/atlas-01").json()
    assert node["chip"] == "Ascend 910B"
    assert node["count"] == 8
    assert node["detector"] == "npu-smi"
    assert node["agent_managed"] is True
    assert {a["memory_mb"] for a in node["accelerators"]} == {65536}
    assert {a["health"] for a in node["accelerators"]} == {"ok"}


def test_dgx_registers_as_eight_h100(api: Api, dc: str) -> None:
    csv = (FIXTURES / "dgx-h100" / "nvidia-smi-query.csv").read_text()
    table = (FIXTURES / "dgx-h100" / "nvidia-smi.txt").read_text()
    from suanli.agent.detect.nvidia_smi import QUERY

    detect = partial(recorded, {tuple(QUERY): csv, ("nvidia-smi",): table}, FIXTURES / "dgx-h100")
    agent = make_agent(api, "dgx-01", detect)
    agent.register()
    node = api.client.get("/v1/nodes/dgx-01").json()
    assert (node["chip"], node["count"], node["detector"]) == ("H100 SXM", 8, "nvidia-smi")


def test_silent_node_goes_down_and_comes_back_to_its_state(api: Api, dc: str) -> None:
    agent = make_agent(api, "atlas-01")
    agent.register()
    for state in ("qualifying", "ready"):
        api.client.post("/v1/nodes/atlas-01/state", json={"state": state, "reason": "test"})
    with api.sessions() as s:
        assert agents.mark_silent_down(s, 30.0) == []  # it just spoke
        later = utcnow() + timedelta(seconds=31)
        assert agents.mark_silent_down(s, 30.0, now=later) == ["atlas-01"]
        assert agents.mark_silent_down(s, 30.0, now=later) == []  # a second checker finds nothing
        s.commit()
    node = api.client.get("/v1/nodes/atlas-01").json()
    assert (node["state"], node["previous_state"]) == ("down", "ready")
    assert agent.beat() == "ready"
    events = [e["to_state"] for e in api.client.get("/v1/nodes/atlas-01/events").json()]
    assert events[:2] == ["ready", "down"]


def test_fleet_nodes_without_agent_never_go_down(api: Api, dc: str) -> None:
    api.client.post(
        "/v1/nodes", json={"name": "static", "data_center": dc, "chip": "H20", "count": 8}
    )
    with api.sessions() as s:
        assert agents.mark_silent_down(s, 1.0, now=utcnow() + timedelta(days=1)) == []


def test_forgotten_node_registers_again(api: Api, dc: str) -> None:
    agent = make_agent(api, "atlas-01")
    agent.register()
    api.client.delete("/v1/nodes/atlas-01")
    assert agent.beat() == "registered"
    assert api.client.get("/v1/nodes/atlas-01").status_code == 200


def test_unknown_data_center_stops_the_agent_with_the_reason(api: Api, dc: str) -> None:
    agent = make_agent(api, "atlas-01", data_center="nowhere")
    with pytest.raises(ApiError) as info:
        agent.run()
    assert info.value.status == 404
    assert "nowhere" in info.value.message


def test_run_loop_heartbeats_until_stopped(api: Api, dc: str) -> None:
    agent = make_agent(api, "atlas-01")
    thread = threading.Thread(target=agent.run)
    thread.start()
    assert agent.registered.wait(5)
    first = api.client.get("/v1/nodes/atlas-01").json()["last_heartbeat_at"]
    deadline = utcnow() + timedelta(seconds=5)
    while api.client.get("/v1/nodes/atlas-01").json()["last_heartbeat_at"] == first:
        assert utcnow() < deadline, "no heartbeat arrived"
        agent.stop_event.wait(0.05)
    agent.stop()
    thread.join(5)
    assert not thread.is_alive()


def test_unhealthy_device_is_reported(api: Api, dc: str) -> None:
    text = (FIXTURES / "atlas800-910b" / "npu-smi-info.txt").read_text()
    sick = text.replace(
        "| 3     910B3               | OK     ", "| 3     910B3               | Alarm  ", 1
    )
    assert sick != text
    agent = make_agent(
        api, "atlas-01", partial(recorded, {("npu-smi", "info"): sick}, FIXTURES / "atlas800-910b")
    )
    agent.register()
    health = [a["health"] for a in api.client.get("/v1/nodes/atlas-01").json()["accelerators"]]
    assert health[3] == "critical"
    assert health.count("ok") == 7


def test_default_node_name_is_valid() -> None:
    assert default_node_name("GPU_Server 01.example") == "gpu-server-01.example"
    assert default_node_name("___") == "node"
