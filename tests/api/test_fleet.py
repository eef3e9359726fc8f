"""Fleet files: all or nothing, idempotent, errors name the row and line."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Api

EXAMPLE = Path(__file__).parents[2] / "examples" / "fleet-mixed.yaml"


def _apply(api: Api, text: str, dry_run: bool = False) -> tuple[int, dict[str, object]]:
    r = api.client.post(
        "/v1/fleet/apply",
        content=text.encode(),
        headers={"content-type": "application/yaml"},
        params={"dry_run": str(dry_run).lower()},
    )
    return r.status_code, r.json()


def test_example_imports_and_reapplies_idempotently(api: Api) -> None:
    text = EXAMPLE.read_text()
    status, plan = _apply(api, text, dry_run=True)
    assert status == 200
    assert plan["created_nodes"] == 30
    assert api.client.get("/v1/nodes").json()["nodes"] == []  # dry run wrote nothing
    status, first = _apply(api, text)
    assert (status, first["created_nodes"], len(first["created_data_centers"])) == (200, 30, 3)
    audit_count = len(api.client.get("/v1/audit", params={"limit": 1000}).json())
    status, second = _apply(api, text)
    assert second["created_nodes"] == 0
    assert second["updated_nodes"] == []
    assert second["unchanged_nodes"] == 30
    assert second["unchanged_data_centers"] == 3
    assert len(api.client.get("/v1/audit", params={"limit": 1000}).json()) == audit_count
    dcs = {d["name"]: d for d in api.client.get("/v1/data-centers").json()}
    assert dcs["nx-zhongwei"]["owner_type"] == "state"
    assert dcs["nx-zhongwei"]["accelerators"] == 128
    assert dcs["sg-jurong"]["country"] == "SG"
    chips = {
        n["chip"]
        for n in api.client.get("/v1/nodes", params={"data_center": "sh-lingang"}).json()["nodes"]
    }
    assert chips == {"H800 SXM", "Ascend 910B"}


def test_one_bad_row_applies_nothing_and_names_row_and_line(api: Api) -> None:
    text = """\
data_centers:
  - name: a
    country: CN
    owner_type: private
    nodes:
      - {name: a-1, chip: H20, count: 8}
      - {name: a-2, chip: H20, count: 8}
      - {name: a-3, chip: Ascend 910Z, count: 8}
"""
    status, body = _apply(api, text)
    assert status == 422
    err = body["error"]
    assert err["param"] == "data_centers[0].nodes[2].chip"
    assert err["line"] == 8
    assert "Ascend 910B" in err["message"]
    assert api.client.get("/v1/data-centers").json() == []
    assert api.client.get("/v1/nodes").json()["nodes"] == []


def test_update_changes_only_what_differs(api: Api) -> None:
    base = """\
data_centers:
  - name: a
    country: CN
    owner_type: private
    nodes:
      - {name: "a-{i}", replicas: 3, chip: H20, count: 8, island: x}
"""
    _apply(api, base)
    api.client.post("/v1/nodes/a-1/state", json={"state": "qualifying", "reason": "burn-in"})
    status, result = _apply(api, base.replace("island: x", "island: y").replace("state", "state"))
    assert status == 200
    assert sorted(result["updated_nodes"]) == ["a-1", "a-2", "a-3"]  # type: ignore[arg-type]
    # the file did not name a state, so the operator's move survives
    assert api.client.get("/v1/nodes/a-1").json()["state"] == "qualifying"
    status, result = _apply(api, base.replace("count: 8", "count: 4"))
    assert api.client.get("/v1/nodes/a-2").json()["count"] == 4
    assert len(api.client.get("/v1/nodes/a-2").json()["accelerators"]) == 4


def test_illegal_state_in_file_is_409_and_applies_nothing(api: Api) -> None:
    base = """\
data_centers:
  - name: a
    country: CN
    owner_type: private
    nodes:
      - {name: a-1, chip: H20, count: 8, state: ready}
      - {name: a-2, chip: H20, count: 8}
"""
    _apply(api, base)
    changed = base.replace("state: ready}", "state: registered}").replace(
        "a-2, chip: H20, count: 8", "a-2, chip: H20, count: 2"
    )
    status, _body = _apply(api, changed)
    assert status == 409
    assert api.client.get("/v1/nodes/a-2").json()["count"] == 8


def test_not_yaml_and_wrong_shapes(api: Api) -> None:
    status, body = _apply(api, "data_centers: [\n  {name: a,\n")
    assert status == 422
    assert body["error"]["line"] is not None
    status, body = _apply(api, "just a string")
    assert status == 422
    status, body = _apply(api, "data_centers: []")
    assert status == 422
    assert body["error"]["param"] == "data_centers"
    status, body = _apply(
        api,
        "data_centers:\n  - {name: a, country: CN, owner_type: private, nodes: [{name: x, replicas: 2, chip: H20, count: 1}]}\n",
    )
    assert status == 422
    assert "{i}" in body["error"]["message"]


def test_duplicate_names_in_file(api: Api) -> None:
    text = """\
data_centers:
  - name: a
    country: CN
    owner_type: private
    nodes:
      - {name: "n-{i}", replicas: 2, chip: H20, count: 8}
      - {name: n-2, chip: H20, count: 8}
"""
    status, body = _apply(api, text)
    assert status == 422
    assert "declared twice" in body["error"]["message"]
    assert body["error"]["line"] == 7
