"""Bad input gets a 4xx, never a 500; lifecycle and residency have no side doors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api


@pytest.fixture
def fleet(api: Api) -> Api:
    c = api.client
    c.post("/v1/data-centers", json={"name": "cn", "country": "CN", "owner_type": "private"})
    c.post("/v1/data-centers", json={"name": "sg", "country": "SG", "owner_type": "private"})
    c.post(
        "/v1/nodes",
        json={"name": "h20", "data_center": "cn", "chip": "H20", "count": 8, "state": "ready"},
    )
    c.post("/v1/tenants", json={"name": "acme", "country": "CN", "verified": True})
    c.post("/v1/tenants/acme/datasets", json={"name": "d", "country": "CN"})
    r = c.post(
        "/v1/tenants/acme/workloads",
        json={
            "name": "w",
            "kind": "fine_tune",
            "node": "h20",
            "accelerators": 8,
            "datasets": ["d"],
        },
    )
    assert r.status_code == 201
    return api


def _yaml(api: Api, path: str, text: str) -> Any:
    return api.client.post(
        path, content=text.encode(), headers={"content-type": "application/yaml"}
    )


def test_a_fleet_file_cannot_move_a_busy_node_abroad(fleet: Api) -> None:
    text = "data_centers:\n  - {name: sg, country: SG, owner_type: private, nodes: [{name: h20, chip: H20, count: 8}]}\n"
    r = _yaml(fleet, "/v1/fleet/apply", text)
    assert r.status_code == 409
    assert "runs workloads ['w']" in r.json()["error"]["message"]
    assert fleet.client.get("/v1/nodes/h20").json()["data_center"] == "cn"


def test_a_node_with_history_is_not_deleted(fleet: Api) -> None:
    fleet.client.post("/v1/tenants/acme/workloads/w/finish", json={"outputs": []})
    r = fleet.client.delete("/v1/nodes/h20")
    assert r.status_code == 409
    assert "history" in r.json()["error"]["message"]


def test_a_device_missing_from_a_heartbeat_turns_critical(api: Api) -> None:
    api.client.post(
        "/v1/data-centers", json={"name": "lab", "country": "CN", "owner_type": "private"}
    )
    devices = [{"index": i, "name": "NVIDIA H20", "health": "ok"} for i in range(8)]
    reg = {
        "name": "n",
        "data_center": "lab",
        "hostname": "n",
        "cpu_cores": 8,
        "memory_mb": 1024,
        "detector": "nvml",
        "devices": devices,
    }
    assert api.client.post("/v1/agent/register", json=reg).status_code == 200
    assert (
        api.client.post(
            "/v1/agent/heartbeat", json={"node": "n", "devices": devices[:7]}
        ).status_code
        == 200
    )
    node = api.client.get("/v1/nodes/n").json()
    assert node["count"] == 8
    assert [a["health"] for a in node["accelerators"]] == ["ok"] * 7 + ["critical"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/nodes?after=1180591620717411303424", None),
        ("GET", "/v1/audit?before_id=1180591620717411303424", None),
        ("GET", "/v1/qualifications/1180591620717411303424", None),
        ("DELETE", "/v1/tenants/acme/api-keys/1180591620717411303424", None),
        ("GET", "/v1/nodes?data_center=a%00b", None),
        (
            "POST",
            "/v1/data-centers",
            {
                "name": "x",
                "country": "CN",
                "owner_type": "state",
                "costs": [{"chip": "H20", "per_accelerator_hour": 10**30}],
            },
        ),
        (
            "POST",
            "/v1/data-centers",
            {"name": "x", "country": "CN", "owner_type": "state", "region": "a\x00b"},
        ),
        ("POST", "/v1/nodes", {"name": "x", "data_center": "cn", "memory_mb": 2**70}),
        (
            "POST",
            "/v1/agent/register",
            {
                "name": "x",
                "data_center": "cn",
                "hostname": "x",
                "cpu_cores": 1,
                "memory_mb": 1,
                "detector": "cpu",
                "devices": [{"index": 0, "name": "H20", "ecc_errors": 2**40}],
            },
        ),
        ("GET", "/v1/compliance/report?until=0001-01-05T00:00:00", None),
    ],
)
def test_bad_input_is_4xx_not_500(
    fleet: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    r = fleet.client.request(method, path, json=body)
    assert 400 <= r.status_code < 500, r.text
    assert "error" in r.json()


@pytest.mark.parametrize(
    "text", ["a: &x [1]\nb: *x\n", "version: v\neffective_from: 2024-13-45\n", "a: &a [*a]\n"]
)
def test_hostile_yaml_is_refused(api: Api, text: str) -> None:
    for path in ("/v1/fleet/apply", "/v1/policy/rules"):
        r = _yaml(api, path, text)
        assert r.status_code == 422, r.text
