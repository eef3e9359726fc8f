"""Response shapes (what the API returns), built from rows; secrets appear only on issue."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from suanli.catalog.chips import Chip
from suanli.catalog.export_control import Classification
from suanli.domain.money import Money
from suanli.store.tables import (
    AcceleratorRow,
    AuditRow,
    CredentialRow,
    DataCenterRow,
    NodeEventRow,
    NodeRow,
    TenantRow,
    UserRow,
)


class ChipCostOut(BaseModel):
    chip: str
    per_accelerator_hour: str
    currency: str


class DataCenterOut(BaseModel):
    name: str
    country: str
    region: str
    city: str
    operator: str
    owner_type: str
    costs: list[ChipCostOut]
    nodes: int
    accelerators: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: DataCenterRow, counts: tuple[int, int]) -> DataCenterOut:
        return cls(
            name=row.name,
            country=row.country,
            region=row.region,
            city=row.city,
            operator=row.operator,
            owner_type=row.owner_type,
            costs=[
                ChipCostOut(
                    chip=c.chip,
                    per_accelerator_hour=Money.from_micros(c.amount_micros, c.currency).text,
                    currency=c.currency,
                )
                for c in row.costs
            ],
            nodes=counts[0],
            accelerators=counts[1],
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class AcceleratorOut(BaseModel):
    index: int
    chip: str
    memory_mb: int | None
    uuid: str | None
    health: str
    temperature_c: int | None
    utilization_pct: int | None
    ecc_errors: int | None

    @classmethod
    def of(cls, row: AcceleratorRow) -> AcceleratorOut:
        return cls(
            index=row.index,
            chip=row.chip,
            memory_mb=row.memory_mb,
            uuid=row.uuid,
            health=row.health,
            temperature_c=row.temperature_c,
            utilization_pct=row.utilization_pct,
            ecc_errors=row.ecc_errors,
        )


class NodeOut(BaseModel):
    name: str
    data_center: str
    chip: str | None
    count: int
    island: str
    state: str
    previous_state: str | None
    state_reason: str
    state_changed_at: datetime
    agent_managed: bool
    hostname: str | None
    cpu_cores: int | None
    memory_mb: int | None
    detector: str | None
    last_heartbeat_at: datetime | None
    accelerators: list[AcceleratorOut] | None = None

    @classmethod
    def of(cls, row: NodeRow, data_center: str, with_devices: bool = False) -> NodeOut:
        return cls(
            name=row.name,
            data_center=data_center,
            chip=row.chip,
            count=row.accelerator_count,
            island=row.island,
            state=row.state,
            previous_state=row.previous_state,
            state_reason=row.state_reason,
            state_changed_at=row.state_changed_at,
            agent_managed=row.agent_managed,
            hostname=row.hostname,
            cpu_cores=row.cpu_cores,
            memory_mb=row.memory_mb,
            detector=row.detector,
            last_heartbeat_at=row.last_heartbeat_at,
            accelerators=[AcceleratorOut.of(a) for a in row.accelerators] if with_devices else None,
        )


class NodePage(BaseModel):
    nodes: list[NodeOut]
    next_after: int | None  # pass as ``after`` to get the next page; null on the last page


class NodeEventOut(BaseModel):
    at: datetime
    from_state: str | None
    to_state: str
    reason: str
    actor: str

    @classmethod
    def of(cls, row: NodeEventRow) -> NodeEventOut:
        return cls(
            at=row.at,
            from_state=row.from_state,
            to_state=row.to_state,
            reason=row.reason,
            actor=row.actor,
        )


class UserOut(BaseModel):
    email: str
    name: str
    role: str

    @classmethod
    def of(cls, row: UserRow) -> UserOut:
        return cls(email=row.email, name=row.name, role=row.role)


class TenantOut(BaseModel):
    name: str
    display_name: str
    country: str
    verified: bool
    rpm_limit: int | None
    tpm_limit: int | None
    users: list[UserOut]
    created_at: datetime

    @classmethod
    def of(cls, row: TenantRow) -> TenantOut:
        return cls(
            name=row.name,
            display_name=row.display_name,
            country=row.country,
            verified=row.verified,
            rpm_limit=row.rpm_limit,
            tpm_limit=row.tpm_limit,
            users=[UserOut.of(u) for u in row.users],
            created_at=row.created_at,
        )


class CredentialOut(BaseModel):
    id: int
    kind: str
    name: str
    prefix: str
    models: list[str] | None
    rpm_limit: int | None
    tpm_limit: int | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: CredentialRow) -> CredentialOut:
        return cls(
            id=row.id,
            kind=row.kind,
            name=row.name,
            prefix=row.prefix,
            models=row.allowed_models,
            rpm_limit=row.rpm_limit,
            tpm_limit=row.tpm_limit,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class IssuedCredentialOut(CredentialOut):
    secret: str  # shown once; only its SHA-256 digest is stored


class ChipOut(BaseModel):
    vendor: str
    model: str
    domestic_cn: bool
    software_stack: str
    memory_gb: str | None
    memory_bw_gbps: str | None
    bf16_dense_tflops: str | None
    fp16_dense_tflops: str | None
    fp8_dense_tflops: str | None
    int8_dense_tops: str | None
    interconnect: str | None
    die_area_mm2: str | None
    tdp_w: str | None
    release_year: int | None
    aliases: list[str]
    source: str
    export_class: str
    tpp: str | None
    performance_density: str | None
    export_clause: str
    export_explanation: str

    @classmethod
    def of(cls, chip: Chip, cls_: Classification) -> ChipOut:
        def s(v: object) -> str | None:
            return None if v is None else str(v)

        return cls(
            vendor=chip.vendor,
            model=chip.model,
            domestic_cn=chip.domestic_cn,
            software_stack=chip.software_stack,
            memory_gb=s(chip.memory_gb),
            memory_bw_gbps=s(chip.memory_bw_gbps),
            bf16_dense_tflops=s(chip.bf16_dense_tflops),
            fp16_dense_tflops=s(chip.fp16_dense_tflops),
            fp8_dense_tflops=s(chip.fp8_dense_tflops),
            int8_dense_tops=s(chip.int8_dense_tops),
            interconnect=chip.interconnect,
            die_area_mm2=s(chip.die_area_mm2),
            tdp_w=s(chip.tdp_w),
            release_year=chip.release_year,
            aliases=list(chip.aliases),
            source=chip.source,
            export_class=cls_.export_class,
            tpp=s(cls_.tpp),
            performance_density=s(cls_.performance_density),
            export_clause=cls_.clause,
            export_explanation=cls_.explanation,
        )


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    resource_type: str
    resource: str
    before: dict[str, object] | None
    after: dict[str, object] | None
    reason: str
    request_id: str

    @classmethod
    def of(cls, row: AuditRow) -> AuditOut:
        return cls(
            id=row.id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            resource_type=row.resource_type,
            resource=row.resource,
            before=row.before,
            after=row.after,
            reason=row.reason,
            request_id=row.request_id,
        )
