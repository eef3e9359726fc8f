"""Data centers over the real API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

NX = {
    "name": "nx-zhongwei",
    "country": "cn",
    "region": "Ningxia",
    "city": "Zhongwei",
    "operator": "NWCD",
    "owner_type": "state",
    "costs": [
        {"chip": "910B", "per_accelerator_hour": "8.50", "currency": "CNY"},
        {"chip": "H20", "per_accelerator_hour": 7},
    ],
}


def test_create_and_read_back(api: Api) -> None:
    r = api.client.post("/v1/data-centers", json=NX)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["country"] == "CN"
    assert body["costs"] == [
        {"chip": "Ascend 910B", "per_accelerator_hour": "8.5", "currency": "CNY"},
        {"chip": "H20", "per_accelerator_hour": "7", "currency": "CNY"},
    ]
    listed = api.client.get("/v1/data-centers").json()
    assert [d["name"] for d in listed] == ["nx-zhongwei"]
    assert listed[0]["nodes"] == 0


def _error(r: Any) -> dict[str, Any]:
    err: dict[str, Any] = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    return err


@pytest.mark.parametrize(
    ("patch", "param", "fragment"),
    [
        ({"country": "XX"}, "country", "not an ISO 3166-1"),
        ({"country": 7}, "country", "alpha-2"),
        ({"owner_type": "public"}, "owner_type", "state"),
        ({"name": "bad name!"}, "name", "not a valid name"),
        ({"costs": [{"chip": "H10", "per_accelerator_hour": "1"}]}, "costs[0].chip", "H100"),
        (
            {"costs": [{"chip": "H20", "per_accelerator_hour": 2.5}]},
            "costs[0].per_accelerator_hour",
            "decimal string",
        ),
        (
            {"costs": [{"chip": "H20", "per_accelerator_hour": "-1"}]},
            "costs[0].per_accelerator_hour",
            "negative",
        ),
        (
            {"costs": [{"chip": "H20", "per_accelerator_hour": "1", "currency": "XYZ"}]},
            "costs[0].currency",
            "unknown currency",
        ),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    api: Api, patch: dict[str, Any], param: str, fragment: str
) -> None:
    r = api.client.post("/v1/data-centers", json={**NX, **patch})
    assert r.status_code == 422, r.text
    err = _error(r)
    assert err["param"] == param
    assert fragment in err["message"]
    assert api.client.get("/v1/data-centers").json() == []
    assert api.client.get("/v1/audit", params={"resource_type": "data_center"}).json() == []


def test_malformed_json_is_422(api: Api) -> None:
    r = api.client.post(
        "/v1/data-centers", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert _error(r)["type"] == "invalid_request_error"


def test_duplicate_is_409_and_missing_is_404(api: Api) -> None:
    assert api.client.post("/v1/data-centers", json=NX).status_code == 201
    r = api.client.post("/v1/data-centers", json=NX)
    assert r.status_code == 409
    assert "already exists" in _error(r)["message"]
    r = api.client.get("/v1/data-centers/nowhere")
    assert r.status_code == 404
    assert _error(r)["code"] == "not_found"


def test_patch_costs_is_audited_with_before_and_after(api: Api) -> None:
    api.client.post("/v1/data-centers", json=NX)
    r = api.client.patch(
        "/v1/data-centers/nx-zhongwei",
        json={"costs": [{"chip": "Ascend 910B", "per_accelerator_hour": "9.10"}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["costs"] == [
        {"chip": "Ascend 910B", "per_accelerator_hour": "9.1", "currency": "CNY"}
    ]
    entry = api.client.get("/v1/audit", params={"resource_type": "data_center"}).json()[0]
    assert entry["action"] == "update"
    assert entry["actor"] == "admin:bootstrap"
    assert len(entry["before"]["costs"]) == 2
    assert len(entry["after"]["costs"]) == 1


def test_money_keeps_micro_precision(api: Api) -> None:
    body = {**NX, "costs": [{"chip": "H20", "per_accelerator_hour": "0.000001"}]}
    assert api.client.post("/v1/data-centers", json=body).status_code == 201
    got = api.client.get("/v1/data-centers/nx-zhongwei").json()["costs"][0]
    assert got["per_accelerator_hour"] == "0.000001"
    too_fine = {**NX, "name": "b", "costs": [{"chip": "H20", "per_accelerator_hour": "0.0000001"}]}
    assert api.client.post("/v1/data-centers", json=too_fine).status_code == 422


def test_delete_refuses_while_nodes_remain(api: Api) -> None:
    api.client.post("/v1/data-centers", json={**NX, "owner_type": "private"})
    api.client.post(
        "/v1/nodes", json={"name": "n1", "data_center": "nx-zhongwei", "chip": "H20", "count": 8}
    )
    r = api.client.delete("/v1/data-centers/nx-zhongwei")
    assert r.status_code == 409
    assert api.client.delete("/v1/nodes/n1").status_code == 204
    assert api.client.delete("/v1/data-centers/nx-zhongwei").status_code == 204
