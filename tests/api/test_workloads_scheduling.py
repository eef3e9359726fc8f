"""Workloads without a node over the API: 202 pending, placed by the scheduling loop,
listed, explained, cancelled; bad requests name the field."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from suanli.api.app import create_app
from suanli.services import scheduling
from suanli.settings import Settings
from tests.conftest import Api

EXAMPLE = Path(__file__).parents[2] / "examples" / "fleet-mixed.yaml"


@pytest.fixture
def fleet(api: Api) -> Api:
    r = api.client.post(
        "/v1/fleet/apply",
        content=EXAMPLE.read_text().encode(),
        headers={"content-type": "application/yaml"},
    )
    assert r.status_code == 200, r.text
    r = api.client.post("/v1/tenants", json={"name": "acme", "country": "CN", "verified": True})
    assert r.status_code == 201
    return api


def _round(api: Api) -> scheduling.RoundSummary:
    with api.sessions() as s:
        summary = scheduling.schedule_pending(s)
        s.commit()
        return summary


JOB = {"name": "ft", "kind": "fine_tune", "accelerators": 8, "chips": ["Ascend 910B"]}


def test_submit_without_a_node_is_pending_then_placed(fleet: Api) -> None:
    c = fleet.client
    r = c.post("/v1/tenants/acme/workloads", json=JOB)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "pending"
    assert body["node"] is None
    assert body["chip"] is None
    assert body["request"]["chips"] == ["Ascend 910B"]
    assert body["request"]["topology"] == "node"
    assert [w["name"] for w in c.get("/v1/tenants/acme/workloads?state=pending").json()] == ["ft"]
    assert c.get("/v1/tenants/acme/workloads?state=running").json() == []
    assert _round(fleet).placed == ("acme/ft",)
    one = c.get("/v1/tenants/acme/workloads/ft").json()
    assert one["state"] == "running"
    assert one["chip"] == "Ascend 910B"
    assert one["node"].startswith(("nx-910b-", "sh-910b-"))
    assert one["slots"][0]["devices"] == list(range(8))
    why = c.get("/v1/tenants/acme/workloads/ft/why").json()
    assert why["explanation"]["placed"] is True
    assert why["explanation"]["score"]["policy"] == "throughput"


def test_named_node_keeps_todays_behaviour(fleet: Api) -> None:
    r = fleet.client.post("/v1/tenants/acme/workloads", json={**JOB, "node": "nx-910b-01"})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "running"
    assert r.json()["nodes"] == ["nx-910b-01"]
    assert r.json()["decisions"]


def test_a_gang_too_big_waits_and_why_names_the_filter(fleet: Api) -> None:
    c = fleet.client
    big = {**JOB, "name": "huge", "accelerators": 64}
    assert c.post("/v1/tenants/acme/workloads", json=big).status_code == 202
    live = c.get("/v1/tenants/acme/workloads/huge/why").json()
    assert live["computed_now"] is True
    assert live["state"] == "pending"
    assert "topology" in live["text"]
    _round(fleet)
    why = c.get("/v1/tenants/acme/workloads/huge/why").json()
    assert why["computed_now"] is False
    names = [f["filter"] for f in why["explanation"]["filters"] if f["removed"]]
    assert "topology" in names
    assert "64 must share one node" in why["text"]
    listed = c.get("/v1/tenants/acme/workloads/huge").json()
    assert "topology" in listed["waiting_because"]


def test_cancel_pending_and_running_then_409(fleet: Api) -> None:
    c = fleet.client
    c.post("/v1/tenants/acme/workloads", json=JOB)
    c.post("/v1/tenants/acme/workloads", json={**JOB, "name": "later"})
    _round(fleet)
    r = c.post("/v1/tenants/acme/workloads/ft/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    assert r.json()["finished_at"] is not None
    assert c.post("/v1/tenants/acme/workloads/ft/cancel").status_code == 409
    r = c.post("/v1/tenants/acme/workloads/later/finish", json={"outputs": []})
    assert r.status_code == 200
    assert c.post("/v1/tenants/acme/workloads/later/cancel").status_code == 409
    assert c.post("/v1/tenants/acme/workloads/nope/cancel").status_code == 404
    c.post("/v1/tenants/acme/workloads", json={**JOB, "name": "waiting"})
    assert c.post("/v1/tenants/acme/workloads/waiting/cancel").json()["state"] == "cancelled"
    assert _round(fleet).placed == ()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"topology": "rack"}, "topology"),
        ({"priority": "urgent"}, "priority"),
        ({"chips": ["H9000"]}, "chips"),
        ({"stacks": ["OpenCL"]}, "stacks"),
        ({"min_memory_gb": -1}, "min_memory_gb"),
        ({"accelerators": 0}, "accelerators"),
        ({"model_id": "no-such-model"}, "model_id"),
        ({"node": "nx-910b-01", "topology": "island"}, "topology"),
    ],
)
def test_bad_requests_name_the_field_and_write_nothing(
    fleet: Api, change: dict[str, Any], field: str
) -> None:
    c = fleet.client
    r = c.post("/v1/tenants/acme/workloads", json={**JOB, **change})
    assert r.status_code == 422, r.text
    assert field in r.text
    assert c.get("/v1/tenants/acme/workloads").json() == []


def test_the_loop_places_pending_work_and_survives_errors(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from suanli.services import bootstrap
    from suanli.store.db import make_sessionmaker

    real = scheduling.schedule_pending
    failures: list[BaseException] = [
        OperationalError("SELECT 1", {}, Exception("database is restarting")),
        RuntimeError("a bug in one round"),
    ]

    def flaky(session: Session, **kw: Any) -> scheduling.RoundSummary:
        if failures:
            raise failures.pop(0)
        return real(session, **kw)

    monkeypatch.setattr(scheduling, "schedule_pending", flaky)

    with make_sessionmaker(engine)() as s:
        token = bootstrap.ensure_admin(s)
        s.commit()
    settings = Settings(home=tmp_path / "home", scheduler_interval_s=0.05, rating_interval_s=60)
    app = create_app(settings, engine, liveness=True)
    with TestClient(app) as c:
        c.headers["authorization"] = f"Bearer {token}"
        c.post(
            "/v1/fleet/apply",
            content=EXAMPLE.read_text().encode(),
            headers={"content-type": "application/yaml"},
        )
        c.post("/v1/tenants", json={"name": "acme", "country": "CN", "verified": True})
        assert c.post("/v1/tenants/acme/workloads", json=JOB).status_code == 202
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if c.get("/v1/tenants/acme/workloads/ft").json()["state"] == "running":
                break
            time.sleep(0.05)
        assert c.get("/v1/tenants/acme/workloads/ft").json()["state"] == "running"
    assert failures == []
