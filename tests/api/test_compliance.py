"""The compliance engine end to end over the API, on the mixed example fleet."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api

EXAMPLE = Path(__file__).parents[2] / "examples" / "fleet-mixed.yaml"
TEN_H100 = """\
data_centers:
  - name: nx-zhongwei
    country: CN
    region: Ningxia
    city: Zhongwei
    operator: Ningxia Western Cloud Computing
    owner_type: state
    costs:
      - {chip: Ascend 910B, per_accelerator_hour: "8.50", currency: CNY}
      - {chip: H20, per_accelerator_hour: "7.20", currency: CNY}
    nodes:
      - {name: "nx-h100-{i:02d}", replicas: 10, chip: H100 SXM, count: 8, state: ready}
"""


def _yaml(api: Api, path: str, text: str, **params: str) -> Any:
    return api.client.post(
        path, content=text.encode(), headers={"content-type": "application/yaml"}, params=params
    )


@pytest.fixture
def fleet(api: Api) -> Api:
    assert _yaml(api, "/v1/fleet/apply", EXAMPLE.read_text()).status_code == 200
    for name, verified in (("acme", True), ("shady", False)):
        r = api.client.post(
            "/v1/tenants", json={"name": name, "country": "CN", "verified": verified}
        )
        assert r.status_code == 201
    return api


def test_adding_h100_to_ningxia_is_refused_with_rule_and_shares(fleet: Api) -> None:
    r = _yaml(fleet, "/v1/fleet/apply", TEN_H100)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "policy_violation"
    assert err["rules"] == ["CN-STATE-DOMESTIC-COUNT"]
    assert "75.00% before" in err["message"]
    assert "46.15% after" in err["message"]
    assert fleet.client.get("/v1/data-centers/nx-zhongwei").json()["accelerators"] == 128
    single = fleet.client.post(
        "/v1/nodes", json={"name": "x", "data_center": "nx-zhongwei", "chip": "H20", "count": 8}
    )
    assert single.status_code == 201  # 96 of 136 is still more than half
    report = fleet.client.get("/v1/compliance/report").json()
    assert report["refusals"]["by_rule"] == {"CN-STATE-DOMESTIC-COUNT": 1}


def test_override_goes_through_and_is_audited(fleet: Api) -> None:
    r = _yaml(fleet, "/v1/fleet/apply", TEN_H100, override_reason="ministry waiver 2026-17")
    assert r.status_code == 200, r.text
    entry = fleet.client.get("/v1/audit", params={"resource_type": "policy"}).json()[0]
    assert entry["action"] == "policy_override"
    assert entry["reason"] == "ministry waiver 2026-17"
    assert entry["after"]["rules"] == ["CN-STATE-DOMESTIC-COUNT"]
    report = fleet.client.get("/v1/compliance/report").json()
    nx = next(d for d in report["data_centers"] if d["data_center"] == "nx-zhongwei")
    assert nx["rules"][0]["status"] == "violated"
    assert report["refusals"]["overrides"] == 1


def test_removing_domestic_nodes_can_be_refused(fleet: Api) -> None:
    for i in range(1, 8):
        assert fleet.client.delete(f"/v1/nodes/nx-910b-{i:02d}").status_code == 204
    r = fleet.client.delete("/v1/nodes/nx-910b-08")  # 32 of 64: exactly half is not more than half
    assert r.status_code == 409
    assert r.json()["error"]["rules"] == ["CN-STATE-DOMESTIC-COUNT"]
    assert "55.56% before, 50.00% after" in r.json()["error"]["message"]


def test_residency_follows_data_and_its_lineage(fleet: Api) -> None:
    c = fleet.client
    assert (
        c.post("/v1/tenants/acme/datasets", json={"name": "cn-chat", "country": "CN"}).status_code
        == 201
    )
    where = c.post(
        "/v1/policy/evaluate",
        json={"tenant": "acme", "kind": "fine_tune", "accelerators": 8, "datasets": ["cn-chat"]},
    ).json()
    allowed = {(w["data_center"], w["chip"]) for w in where if w["allowed"]}
    refused = {w["data_center"] for w in where if not w["allowed"]}
    assert {dc for dc, _chip in allowed} == {"nx-zhongwei", "sh-lingang"}
    assert refused == {"sg-jurong"}
    sg = next(w for w in where if w["data_center"] == "sg-jurong")
    assert "[RESIDENCY]" in sg["sentence"]

    job = {"name": "ft-1", "kind": "fine_tune", "accelerators": 8, "datasets": ["cn-chat"]}
    r = c.post("/v1/tenants/acme/workloads", json={**job, "node": "sg-h100-01"})
    assert r.status_code == 403
    assert r.json()["error"]["rules"] == ["RESIDENCY"]
    r = c.post("/v1/tenants/acme/workloads", json={**job, "node": "sh-h800-01"})
    assert r.status_code == 201, r.text
    made = c.post(
        "/v1/tenants/acme/workloads/ft-1/finish",
        json={"outputs": [{"name": "cn-lora", "kind": "adapter"}]},
    ).json()
    assert made[0]["residency"] == ["CN"]
    assert c.get("/v1/tenants/acme/artifacts/cn-lora").json()["parents"] == ["dataset:cn-chat"]

    deploy = {"name": "serve-1", "kind": "inference", "accelerators": 1, "artifacts": ["cn-lora"]}
    r = c.post("/v1/tenants/acme/workloads", json={**deploy, "node": "sg-h100-02"})
    assert r.status_code == 403
    assert "cn-lora" in r.json()["error"]["message"]
    assert (
        c.post("/v1/tenants/acme/workloads", json={**deploy, "node": "nx-h20-01"}).status_code
        == 201
    )
    c.post(
        "/v1/tenants/acme/workloads/serve-1/finish",
        json={"outputs": [{"name": "cn-lora-int4", "kind": "compressed"}]},
    )
    grandchild = c.get("/v1/tenants/acme/artifacts/cn-lora-int4").json()
    assert grandchild["residency"] == ["CN"]  # transitively
    assert (
        c.post(
            "/v1/tenants/acme/artifacts/cn-lora-int4/export", json={"destination_country": "SG"}
        ).status_code
        == 403
    )
    assert (
        c.post(
            "/v1/tenants/acme/artifacts/cn-lora/export", json={"destination_country": "CN"}
        ).status_code
        == 200
    )

    report = c.get("/v1/compliance/report").json()
    assert {a["artifact"] for a in report["residency_bound_artifacts"]} == {
        "cn-lora",
        "cn-lora-int4",
    }
    assert report["refusals"]["by_rule"]["RESIDENCY"] == 3


def test_export_control_and_quota(fleet: Api) -> None:
    c = fleet.client
    job = {"name": "t", "kind": "training", "accelerators": 8}
    r = c.post("/v1/tenants/shady/workloads", json={**job, "node": "sh-h800-01"})
    assert r.status_code == 403
    assert r.json()["error"]["rules"] == ["EC-CONTROLLED-UNVERIFIED"]
    assert (
        c.post("/v1/tenants/shady/workloads", json={**job, "node": "nx-h20-01"}).status_code == 201
    )
    r = c.post("/v1/tenants/acme/workloads", json={**job, "node": "sg-h100-01"})
    assert r.status_code == 201
    licence = next(d for d in r.json()["decisions"] if d["kind"] == "export_control")
    assert licence["licence"] == "EXAMPLE-LICENCE-REF-001"

    tight = (
        c.get("/v1/policy/rules")
        .json()["text"]
        .replace("version: example-2026.1", "version: tight")
        .replace("max_accelerators: 512", "max_accelerators: 12")
    )
    assert _yaml(fleet, "/v1/policy/rules", tight).status_code == 201
    assert c.get("/v1/policy/rules").json()["version"] == "tight"
    r = c.post("/v1/tenants/acme/workloads", json={**job, "name": "t2", "node": "sh-h800-02"})
    assert r.status_code == 403
    assert r.json()["error"]["rules"] == ["QUOTA-DEFAULT"]
    assert "would hold 16" in r.json()["error"]["message"]


def test_bad_rule_upload_names_the_line(fleet: Api) -> None:
    bad = "version: v2\neffective_from: 2026-01-01\ndomestic_share:\n  - id: X\n    view: count\n    more_than: 0.5\n"
    r = _yaml(fleet, "/v1/policy/rules", bad)
    assert r.status_code == 422
    assert r.json()["error"]["line"] == 6
    assert r.json()["error"]["param"] == "domestic_share[0].more_than"
    assert fleet.client.get("/v1/policy/rules/history").json() == []


def test_report_shows_three_views_and_usage(fleet: Api) -> None:
    c = fleet.client
    c.post(
        "/v1/tenants/acme/workloads",
        json={"name": "a", "kind": "training", "accelerators": 8, "node": "nx-910b-01"},
    )
    report = c.get("/v1/compliance/report").json()
    nx = next(d for d in report["data_centers"] if d["data_center"] == "nx-zhongwei")
    assert nx["shares"]["count"]["exact"] == "3/4"
    assert nx["shares"]["compute"]["share"] is None
    assert "Ascend 910B" in nx["shares"]["compute"]["note"]
    assert nx["shares"]["cost"]["exact"] == str(
        Fraction(96 * 850, 96 * 850 + 32 * 720)
    )  # 8.50 vs 7.20 CNY
    assert nx["domestic_idle_now"] == 88
    assert nx["usage_share"] == "1.000000"
    csv = c.get("/v1/compliance/report", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("data_center,country")
    assert "CN-STATE-DOMESTIC-COUNT=compliant" in csv.text
