"""Accelerator time accrues per minute: operators are owed, dedicated capacity is charged,
and the margin report shows revenue, cost and margin per data center."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from suanli.billing import ledger
from suanli.domain.actor import SYSTEM
from suanli.domain.serving import DeploymentSpec
from suanli.domain.specs import DataCenterSpec, NodeSpec, TenantSpec
from suanli.services import billing, billing_reports, datacenters, deployments, nodes, tenants

MINUTE = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _fleet(s: Session) -> None:
    datacenters.create(
        s,
        SYSTEM,
        DataCenterSpec(
            name="nx",
            country="CN",
            owner_type="private",
            costs=[{"chip": "H100 SXM", "per_accelerator_hour": "12", "currency": "CNY"}],  # type: ignore[list-item]
        ),
    )
    nodes.create(
        s, SYSTEM, NodeSpec(name="g1", data_center="nx", chip="H100 SXM", count=8, state="ready")
    )
    tenants.create(s, SYSTEM, TenantSpec(name="acme", country="CN"))


def test_a_minute_of_a_dedicated_deployment(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s:
        _fleet(s)
        deployments.create(
            s,
            SYSTEM,
            DeploymentSpec(model="qwen2.5-7b-instruct", chip="H100 SXM", tenant="acme"),
        )
        s.commit()
        posted = billing_reports.accrue_minute(s, MINUTE)
        s.commit()
        assert posted == 2  # the operator's cost and the tenant's charge
        assert billing_reports.accrue_minute(s, MINUTE) == 0  # the same minute: once
        s.commit()
        owed = billing.raw_balances(s, [ledger.payable_account("nx")])
        # 12 CNY an hour for one H100 = 0.2 CNY a minute
        assert -owed[ledger.payable_account("nx")] == 200_000
        report = billing_reports.margin(
            s, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
        )
        (dc,) = report["data_center"]
        # the packaged example price: 18 CNY an hour = 0.3 a minute
        assert (dc["data_center"], dc["revenue"], dc["cost"], dc["margin"]) == (
            "nx",
            "0.30",
            "0.20",
            "0.10",
        )
        inv = billing_reports.invoice(s, "acme", "2026-11")
        assert inv.total_micros == 300_000
        assert billing.verify(s) == []
        assert billing_reports.margin_png(report).startswith(b"\x89PNG")


def test_shared_deployments_cost_the_platform_only(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as s:
        _fleet(s)
        deployments.create(s, SYSTEM, DeploymentSpec(model="qwen2.5-7b-instruct", chip="H100 SXM"))
        s.commit()
        assert billing_reports.accrue_minute(s, MINUTE) == 1
        s.commit()
        report = billing_reports.margin(
            s, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
        )
        assert report["data_center"][0]["margin"] == "-0.20"
