"""Nodes, accelerators and the lifecycle over the real API."""

from __future__ import annotations

import pytest

from tests.conftest import Api


@pytest.fixture
def dc(api: Api) -> str:
    body = {"name": "sh", "country": "CN", "owner_type": "private"}
    assert api.client.post("/v1/data-centers", json=body).status_code == 201
    return "sh"


def test_create_node_fills_accelerators_from_catalog(api: Api, dc: str) -> None:
    r = api.client.post(
        "/v1/nodes",
        json={"name": "sh-h800-01", "data_center": dc, "chip": "H800", "count": 8, "island": "a"},
    )
    assert r.status_code == 201, r.text
    node = r.json()
    assert node["chip"] == "H800 SXM"
    assert node["state"] == "registered"
    assert [a["memory_mb"] for a in node["accelerators"]] == [80 * 1024] * 8
    assert api.client.get("/v1/data-centers/sh").json()["accelerators"] == 8


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"chip": "H800", "count": -1}, "count", 422),
        ({"chip": "H800", "count": "eight"}, "count", 422),
        ({"chip": "H8OO", "count": 8}, "chip", 422),
        ({"count": 8}, None, 422),
        ({"chip": "H800", "count": 8, "state": "draining"}, "state", 422),
        ({"chip": "H800", "count": 8, "data_center": "nowhere"}, None, 404),
    ],
)
def test_bad_nodes_are_refused(
    api: Api, dc: str, body: dict[str, object], param: str | None, status: int
) -> None:
    r = api.client.post("/v1/nodes", json={"name": "n", "data_center": dc, **body})
    assert r.status_code == status, r.text
    if param:
        assert r.json()["error"]["param"] == param
    assert api.client.get("/v1/nodes").json()["nodes"] == []


def test_unknown_chip_suggests_catalog_names(api: Api, dc: str) -> None:
    r = api.client.post(
        "/v1/nodes", json={"name": "n", "data_center": dc, "chip": "Ascend 910X", "count": 8}
    )
    err = r.json()["error"]
    assert "did you mean" in err["message"]
    assert "Ascend 910B" in err["message"]


def test_lifecycle_only_legal_moves_with_reasons(api: Api, dc: str) -> None:
    api.client.post("/v1/nodes", json={"name": "n", "data_center": dc, "chip": "H20", "count": 8})

    def move(state: str, reason: str = "because") -> int:
        return api.client.post(
            "/v1/nodes/n/state", json={"state": state, "reason": reason}
        ).status_code

    assert move("ready") == 409  # registered must qualify first
    assert move("qualifying") == 200
    assert move("ready") == 200
    assert move("draining") == 200
    assert move("ready") == 200
    assert move("draining") == 200
    assert move("quarantined") == 200
    assert move("ready") == 409  # only re-qualifying leaves quarantine
    r = api.client.post("/v1/nodes/n/state", json={"state": "qualifying", "reason": ""})
    assert r.status_code == 422
    assert r.json()["error"]["param"] == "reason"
    r = api.client.post("/v1/nodes/n/state", json={"state": "sleeping", "reason": "x"})
    assert r.status_code == 422
    assert r.json()["error"]["param"] == "state"
    events = api.client.get("/v1/nodes/n/events").json()
    assert [e["to_state"] for e in reversed(events)] == [
        "registered",
        "qualifying",
        "ready",
        "draining",
        "ready",
        "draining",
        "quarantined",
    ]
    assert all(e["reason"] for e in events)
    conflict = api.client.post("/v1/nodes/n/state", json={"state": "ready", "reason": "x"}).json()
    assert "allowed from quarantined" in conflict["error"]["message"]


def test_list_filters_and_pages(api: Api, dc: str) -> None:
    for i in range(5):
        chip = "H20" if i % 2 else "Ascend 910B"
        api.client.post(
            "/v1/nodes", json={"name": f"n{i}", "data_center": dc, "chip": chip, "count": 8}
        )
    page = api.client.get("/v1/nodes", params={"limit": 2}).json()
    assert [n["name"] for n in page["nodes"]] == ["n0", "n1"]
    rest = api.client.get("/v1/nodes", params={"limit": 10, "after": page["next_after"]}).json()
    assert [n["name"] for n in rest["nodes"]] == ["n2", "n3", "n4"]
    assert rest["next_after"] is None
    by_chip = api.client.get("/v1/nodes", params={"chip": "910b"}).json()["nodes"]
    assert [n["name"] for n in by_chip] == ["n0", "n2", "n4"]
    assert api.client.get("/v1/nodes", params={"limit": 10001}).status_code == 422
    assert api.client.get("/v1/nodes", params={"state": "nope"}).status_code == 422


def test_duplicate_node_is_409(api: Api, dc: str) -> None:
    body = {"name": "n", "data_center": dc, "chip": "H20", "count": 8}
    assert api.client.post("/v1/nodes", json=body).status_code == 201
    assert api.client.post("/v1/nodes", json=body).status_code == 409
