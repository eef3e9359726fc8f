"""Deployments: engine choice per chip, placement with memory fit, drain, external endpoints."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from suanli.domain.actor import SYSTEM
from suanli.domain.serving import DeploymentPatch, DeploymentSpec, ReplicaReport
from suanli.domain.specs import DataCenterSpec, NodeSpec
from suanli.errors import ConflictError, ValidationError
from suanli.services import datacenters, deployments, nodes
from suanli.store.tables import DeploymentRow, ReplicaRow


def _fleet(s: Session) -> None:
    datacenters.create(s, SYSTEM, DataCenterSpec(name="bj", country="CN", owner_type="state"))
    for name, chip, count in (
        ("asc-1", "Ascend 910B", 8),
        ("asc-2", "Ascend 910B", 8),
        ("gpu-1", "H100 SXM", 2),
    ):
        nodes.create(
            s,
            SYSTEM,
            NodeSpec(name=name, data_center="bj", chip=chip, count=count, state="ready"),
        )
    nodes.create(s, SYSTEM, NodeSpec(name="cpu-1", data_center="bj", state="ready"))
    s.commit()


@pytest.fixture
def factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    with session_factory() as s:
        _fleet(s)
    return session_factory


def _replicas(s: Session, name: str) -> list[ReplicaRow]:
    return list(deployments.get(s, name).replica_rows)


def test_engine_follows_the_chip_and_replicas_spread(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        row = deployments.create(
            s, SYSTEM, DeploymentSpec(model="qwen2.5-7b-instruct", chip="Ascend 910B", replicas=2)
        )
        s.commit()
        assert row.engine == "vllm-ascend"
        placed = _replicas(s, "qwen2.5-7b-instruct")
        assert sorted(r.node.name for r in placed if r.node) == ["asc-1", "asc-2"]
        assert all(r.state == "starting" for r in placed)
        assert row.accelerators >= 1
        assert all(len(r.devices) == row.accelerators for r in placed)
        gpu = deployments.create(
            s, SYSTEM, DeploymentSpec(model="qwen2.5-7b-instruct", name="q-gpu", chip="H100 SXM")
        )
        s.commit()
        assert gpu.engine == "vllm"
        assert _replicas(s, "q-gpu")[0].node.name == "gpu-1"  # type: ignore[union-attr]


def test_cpu_nodes_get_the_cpu_engines(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        chat = deployments.create(
            s, SYSTEM, DeploymentSpec(model="smollm2-135m-instruct", node="cpu-1")
        )
        embed = deployments.create(
            s, SYSTEM, DeploymentSpec(model="all-minilm-l6-v2", node="cpu-1")
        )
        s.commit()
        assert (chat.engine, embed.engine) == ("llama.cpp", "cpu")
        assert embed.routing == "least_outstanding"  # nothing to cache between embeddings
        assert _replicas(s, "smollm2-135m-instruct")[0].devices == []


def test_bad_requests_name_the_field(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        with pytest.raises(ValidationError) as wrong:
            deployments.create(
                s, SYSTEM, DeploymentSpec(model="all-minilm-l6-v2", engine="llama.cpp")
            )
        assert wrong.value.field == "engine"
        with pytest.raises(ValidationError) as unknown:
            deployments.create(s, SYSTEM, DeploymentSpec(model="all-minilm-l6-v2", engine="trt"))
        assert "known:" in unknown.value.message
        deployments.create(s, SYSTEM, DeploymentSpec(model="all-minilm-l6-v2", node="cpu-1"))
        with pytest.raises(ConflictError):
            deployments.create(s, SYSTEM, DeploymentSpec(model="all-minilm-l6-v2"))


def test_what_does_not_fit_waits_and_says_why(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        row = deployments.create(
            s,
            SYSTEM,
            DeploymentSpec(model="qwen2.5-7b-instruct", chip="H100 SXM", accelerators=4),
        )
        s.commit()
        replica = _replicas(s, row.name)[0]
        assert replica.node_id is None
        assert replica.state == "pending"
        reasons = deployments.why_pending(s, row)
        assert "gpu-1: 2 free accelerators, needs 4" in reasons
        assert any(r.startswith("asc-1: has Ascend 910B") for r in reasons)


def test_accelerators_are_not_handed_out_twice(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        for i in range(3):
            deployments.create(
                s,
                SYSTEM,
                DeploymentSpec(model="qwen2.5-7b-instruct", name=f"q{i}", chip="H100 SXM"),
            )
        s.commit()
        held = [r.devices for i in range(3) for r in _replicas(s, f"q{i}")]
        assert sorted(d for devs in held for d in devs) == [0, 1]  # the third one waits
        assert [] in held


def test_scale_down_drains_and_reports_remove(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        deployments.create(
            s, SYSTEM, DeploymentSpec(model="qwen2.5-7b-instruct", chip="Ascend 910B", replicas=2)
        )
        s.commit()
        deployments.scale(s, SYSTEM, "qwen2.5-7b-instruct", DeploymentPatch(replicas=1))
        s.commit()
        reps = _replicas(s, "qwen2.5-7b-instruct")
        assert sorted(r.desired for r in reps) == ["drain", "run"]
        draining = next(r for r in reps if r.desired == "drain")
        node = draining.node
        assert node is not None
        orders = deployments.orders_for(s, node)
        assert [(o.id, o.desired) for o in orders] == [(draining.id, "drain")]
        deployments.apply_reports(s, node, [ReplicaReport(id=draining.id, state="stopped")])
        s.commit()
        assert len(_replicas(s, "qwen2.5-7b-instruct")) == 1


def test_delete_waits_for_the_last_replica(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        deployments.create(s, SYSTEM, DeploymentSpec(model="all-minilm-l6-v2", node="cpu-1"))
        s.commit()
        replica = _replicas(s, "all-minilm-l6-v2")[0]
        node = replica.node
        assert node is not None
        deployments.apply_reports(
            s, node, [ReplicaReport(id=replica.id, state="ready", endpoint="http://x:1/v1")]
        )
        assert "all-minilm-l6-v2" in deployments.routes(s)
        deployments.delete(s, SYSTEM, "all-minilm-l6-v2")
        s.commit()
        assert "all-minilm-l6-v2" not in deployments.routes(s)  # not routed while draining
        assert s.scalar(select(DeploymentRow.state)) == "deleting"
        deployments.apply_reports(s, node, [ReplicaReport(id=replica.id, state="stopped")])
        s.commit()
        assert s.scalar(select(DeploymentRow.id)) is None


def test_ready_replicas_and_adapters_are_routed(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        spec = DeploymentSpec(
            model="qwen2.5-7b-instruct",
            name="qwen",
            chip="H100 SXM",
            lora=[{"name": "sql-expert", "path": "/adapters/sql"}],  # type: ignore[list-item]
        )
        deployments.create(s, SYSTEM, spec)
        s.commit()
        replica = _replicas(s, "qwen")[0]
        assert replica.node is not None
        assert deployments.routes(s)["qwen"].upstreams == ()  # starting: not routed yet
        deployments.apply_reports(
            s, replica.node, [ReplicaReport(id=replica.id, state="ready", endpoint="http://h:9/v1")]
        )
        table = deployments.routes(s)
        assert table["sql-expert"] is table["qwen"]
        (up,) = table["qwen"].upstreams
        assert (up.endpoint, up.node, up.chip) == ("http://h:9/v1", "gpu-1", "H100 SXM")
        assert table["qwen"].context_length == 32768


def test_external_endpoints(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        spec = DeploymentSpec(
            model="smollm2-135m-instruct",
            name="ext",
            endpoints=["http://127.0.0.1:1/v1/", "http://127.0.0.1:2/v1"],
        )
        row = deployments.create(s, SYSTEM, spec)
        s.commit()
        assert row.engine == "external"
        ups = deployments.routes(s)["ext"].upstreams
        assert [u.endpoint for u in ups] == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]
        assert deployments.place_pending(s) == 0
        with pytest.raises(ConflictError):
            deployments.scale(s, SYSTEM, "ext", DeploymentPatch(replicas=3))
        with pytest.raises(ValidationError) as clash:
            deployments.create(
                s,
                SYSTEM,
                DeploymentSpec(
                    model="smollm2-135m-instruct",
                    name="e2",
                    node="cpu-1",
                    endpoints=["http://a/v1"],
                ),
            )
        assert clash.value.field == "node"
