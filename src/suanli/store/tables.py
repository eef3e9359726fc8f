"""ORM tables. The schema changes only through Alembic migrations (``migrations/``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from suanli.store.types import UTCDateTime, utcnow


class Base(DeclarativeBase):
    pass


class DataCenterRow(Base):
    __tablename__ = "data_centers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    country: Mapped[str] = mapped_column(String(2))
    region: Mapped[str] = mapped_column(String(120), default="")
    city: Mapped[str] = mapped_column(String(120), default="")
    operator: Mapped[str] = mapped_column(String(200), default="")
    owner_type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    costs: Mapped[list[ChipCostRow]] = relationship(
        back_populates="data_center", cascade="all, delete-orphan", order_by="ChipCostRow.chip"
    )


class ChipCostRow(Base):
    """What the data center's operator charges per accelerator-hour of one chip model."""

    __tablename__ = "data_center_chip_costs"
    __table_args__ = (UniqueConstraint("data_center_id", "chip"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data_center_id: Mapped[int] = mapped_column(ForeignKey("data_centers.id", ondelete="CASCADE"))
    chip: Mapped[str] = mapped_column(String(80))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))

    data_center: Mapped[DataCenterRow] = relationship(back_populates="costs")


class NodeRow(Base):
    __tablename__ = "nodes"
    __table_args__ = (
        Index("ix_nodes_data_center", "data_center_id"),
        Index("ix_nodes_state", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    data_center_id: Mapped[int] = mapped_column(ForeignKey("data_centers.id", ondelete="RESTRICT"))
    chip: Mapped[str | None] = mapped_column(String(80), nullable=True)
    accelerator_count: Mapped[int] = mapped_column(Integer, default=0)
    island: Mapped[str] = mapped_column(String(120), default="")
    cpu_cores: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory_mb: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hostname: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    previous_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    state_reason: Mapped[str] = mapped_column(Text, default="")
    state_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    agent_managed: Mapped[bool] = mapped_column(Boolean, default=False)
    detector: Mapped[str | None] = mapped_column(String(32), nullable=True)
    driver_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    data_center: Mapped[DataCenterRow] = relationship()
    accelerators: Mapped[list[AcceleratorRow]] = relationship(
        back_populates="node", cascade="all, delete-orphan", order_by="AcceleratorRow.index"
    )


class AcceleratorRow(Base):
    __tablename__ = "accelerators"
    __table_args__ = (UniqueConstraint("node_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    chip: Mapped[str] = mapped_column(String(80))
    memory_mb: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    uuid: Mapped[str | None] = mapped_column(String(128), nullable=True)
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    temperature_c: Mapped[int | None] = mapped_column(Integer, nullable=True)
    utilization_pct: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ecc_errors: Mapped[int | None] = mapped_column(Integer, nullable=True)

    node: Mapped[NodeRow] = relationship(back_populates="accelerators")


class NodeEventRow(Base):
    """Every lifecycle change of a node, with its reason and who made it."""

    __tablename__ = "node_events"
    __table_args__ = (Index("ix_node_events_node", "node_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(120))

    node: Mapped[NodeRow] = relationship()


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    country: Mapped[str] = mapped_column(String(2))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    rpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm_limit: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # prepaid tenants are refused (429 insufficient_quota) when their funds run out;
    # postpaid ones are invoiced; credit_limit lets a prepaid balance go that far below 0
    prepaid: Mapped[bool] = mapped_column(Boolean, default=False)
    credit_limit_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    users: Mapped[list[UserRow]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", order_by="UserRow.email"
    )


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default="member")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    tenant: Mapped[TenantRow] = relationship(back_populates="users")


class CredentialRow(Base):
    """Admin tokens, node-agent tokens and tenant API keys; only a SHA-256 digest is kept."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # admin | agent | api_key
    name: Mapped[str] = mapped_column(String(120), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True, index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    rpm_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm_limit: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AuditRow(Base):
    """One row per mutation: who, what, when, state before and after."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_resource", "resource_type", "resource"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(120))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")


class RuleSetRow(Base):
    """A compliance rule set as uploaded (YAML text kept verbatim), versioned."""

    __tablename__ = "policy_rule_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    effective_from: Mapped[date] = mapped_column(Date)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(120))


class PolicyDecisionRow(Base):
    """A refusal by a compliance rule (or an operator's override of one)."""

    __tablename__ = "policy_decisions"
    __table_args__ = (Index("ix_policy_decisions_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    subject: Mapped[str] = mapped_column(String(200))  # e.g. "workload acme/ft-1"
    rule: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(32))
    sentence: Mapped[str] = mapped_column(Text)
    overridden: Mapped[bool] = mapped_column(Boolean, default=False)
    override_reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(120))


class DatasetRow(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    country: Mapped[str] = mapped_column(String(2))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ArtifactRow(Base):
    """Something a workload produced (weights, adapter, compressed model).

    ``residency`` is the list of countries it may be in (the intersection over its lineage),
    or null when nothing it derives from is country-bound.
    """

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    produced_by: Mapped[int | None] = mapped_column(
        ForeignKey("workloads.id", ondelete="SET NULL"), nullable=True
    )
    residency: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    residency_sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LineageRow(Base):
    """An edge of the lineage graph: ``artifact`` was derived from a dataset or artifact."""

    __tablename__ = "lineage"
    __table_args__ = (Index("ix_lineage_artifact", "artifact_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    parent_dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="RESTRICT"), nullable=True
    )
    parent_artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifacts.id", ondelete="RESTRICT"), nullable=True
    )


class WorkloadRow(Base):
    """Work asking for accelerators: ``pending`` until placed (on the node the user named,
    or by the scheduler), then ``running`` until ``finished``; ``cancelled`` from pending
    or running; ``preempted`` when high-priority work stopped it (spot only; final).

    A placement over several nodes keeps its first node in ``node_id`` and data center in
    ``data_center_id``; ``placement`` holds every slot (node and device indices) and the
    accelerators per data center. Rows placed before the scheduler have no ``placement``:
    they hold ``accelerators`` of ``node_id`` by count."""

    __tablename__ = "workloads"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        Index("ix_workloads_state", "state"),
        Index("ix_workloads_node", "node_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="RESTRICT"), nullable=True
    )
    data_center_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_centers.id", ondelete="RESTRICT"), nullable=True
    )
    chip: Mapped[str | None] = mapped_column(String(80), nullable=True)
    accelerators: Mapped[int] = mapped_column(Integer)
    domestic: Mapped[bool] = mapped_column(Boolean, default=False)
    inputs: Mapped[list[str]] = mapped_column(JSON, default=list)  # "dataset:x" / "artifact:y"
    residency: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # the request, as the scheduler reads it
    chip_models: Mapped[list[str]] = mapped_column(JSON, default=list)
    chip_stacks: Mapped[list[str]] = mapped_column(JSON, default=list)
    min_memory_gb: Mapped[float | None] = mapped_column(Float, nullable=True)
    gang: Mapped[bool] = mapped_column(Boolean, default=True)
    topology: Mapped[str] = mapped_column(String(16), default="node")  # node|island|dc|any
    priority: Mapped[str] = mapped_column(String(8), default="high")  # high | spot
    model_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    precision: Mapped[str] = mapped_column(String(16), default="bf16")
    placement: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="running")
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class QualificationRunRow(Base):
    """One run of the acceptance suite (or a health check) on a node, with its report."""

    __tablename__ = "qualification_runs"
    __table_args__ = (Index("ix_qualification_runs_node", "node_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # acceptance | health
    level: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(32))
    chip: Mapped[str | None] = mapped_column(String(80), nullable=True)
    passed: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CalibrationRow(Base):
    """A measured figure (from qualification) that the performance model prefers to specs."""

    __tablename__ = "calibration"
    __table_args__ = (Index("ix_calibration_chip_metric", "chip", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chip: Mapped[str] = mapped_column(String(80))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16))
    node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True
    )
    run_id: Mapped[int] = mapped_column(ForeignKey("qualification_runs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeploymentRow(Base):
    """A model served under a name: engine, replica count, chip constraint, LoRA adapters."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)  # the name clients call
    model: Mapped[str] = mapped_column(String(120))  # model catalog id
    kind: Mapped[str] = mapped_column(String(16))  # chat | embedding
    engine: Mapped[str] = mapped_column(String(32))
    replicas: Mapped[int] = mapped_column(Integer)  # desired count
    accelerators: Mapped[int] = mapped_column(Integer, default=0)  # per replica; 0 = CPU
    chip: Mapped[str | None] = mapped_column(String(80), nullable=True)  # constraint
    node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="RESTRICT"), nullable=True
    )  # pinned node
    precision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    context_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    lora: Mapped[list[list[str]]] = mapped_column(JSON, default=list)  # [[name, path], ...]
    routing: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True
    )  # None: offered to every tenant
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | deleting
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    replica_rows: Mapped[list[ReplicaRow]] = relationship(
        back_populates="deployment", cascade="all, delete-orphan", order_by="ReplicaRow.slot"
    )


class ReplicaRow(Base):
    """One engine process of a deployment on one node; its agent reports its state."""

    __tablename__ = "replicas"
    __table_args__ = (
        Index("ix_replicas_node", "node_id"),
        Index("ix_replicas_deployment", "deployment_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    slot: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[int | None] = mapped_column(
        ForeignKey("nodes.id", ondelete="RESTRICT"), nullable=True
    )  # None while pending placement
    devices: Mapped[list[int]] = mapped_column(JSON, default=list)
    desired: Mapped[str] = mapped_column(String(8), default="run")  # run | drain
    state: Mapped[str] = mapped_column(String(16), default="pending")
    endpoint: Mapped[str | None] = mapped_column(String(255), nullable=True)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    deployment: Mapped[DeploymentRow] = relationship(back_populates="replica_rows")
    node: Mapped[NodeRow | None] = relationship()


class UsageRow(Base):
    """One gateway request: who, which model and replica, tokens, latency, outcome.

    No foreign keys: a usage record outlives the key, deployment or node it names."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_tenant_started", "tenant_id", "started_at"),
        Index("ix_usage_started", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant_id: Mapped[int] = mapped_column(Integer)
    credential_id: Mapped[int] = mapped_column(Integer)
    endpoint: Mapped[str] = mapped_column(String(32))  # chat | completions | embeddings
    model: Mapped[str] = mapped_column(String(200))  # the name the client called
    catalog_model: Mapped[str] = mapped_column(String(120), default="")  # what it priced as
    deployment_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replica_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    node: Mapped[str] = mapped_column(String(63), default="")
    chip: Mapped[str] = mapped_column(String(80), default="")
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[int] = mapped_column(Integer)  # HTTP status sent to the client
    outcome: Mapped[str] = mapped_column(String(16))  # ok | error | interrupted
    error_code: Mapped[str] = mapped_column(String(64), default="")
    latency_us: Mapped[int] = mapped_column(BigInteger)
    ttft_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    gateway: Mapped[str] = mapped_column(String(64), default="")
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # why rating refused it (no price book in effect at its time, no price for its model):
    # set aside until an operator fixes the prices and retries, so it blocks nothing
    rating_error: Mapped[str | None] = mapped_column(String(300), nullable=True)


Index(
    "ix_usage_unrated",
    UsageRow.id,
    sqlite_where=UsageRow.rated_at.is_(None),
    postgresql_where=UsageRow.rated_at.is_(None),
)


class PriceBookRow(Base):
    """A price book version as uploaded (YAML); the one in effect rates usage."""

    __tablename__ = "price_books"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    currency: Mapped[str] = mapped_column(String(3))
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VoucherRow(Base):
    """A grant a tenant spends before its cash: an amount, an expiry, maybe some products."""

    __tablename__ = "vouchers"
    __table_args__ = (Index("ix_vouchers_tenant", "tenant_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="RESTRICT"))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    products: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    memo: Mapped[str] = mapped_column(Text, default="")


class LedgerTransactionRow(Base):
    """A balanced set of postings; immutable; unique by the caller's external id."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (Index("ix_ledger_transactions_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    memo: Mapped[str] = mapped_column(Text, default="")
    # what the money is about, for reports: tenant, model, data center, chip, key, request
    dims: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LedgerPostingRow(Base):
    """One side of a transaction: debit positive, credit negative, integer micro-units."""

    __tablename__ = "ledger_postings"
    __table_args__ = (
        Index("ix_postings_account", "account"),
        Index("ix_postings_transaction", "transaction_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.id", ondelete="RESTRICT")
    )
    account: Mapped[str] = mapped_column(String(160))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))


class LedgerBalanceRow(Base):
    """Each account's running balance, updated with its postings in the same transaction."""

    __tablename__ = "ledger_balances"

    account: Mapped[str] = mapped_column(String(160), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    balance_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    postings: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
