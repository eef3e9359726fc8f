"""What a node agent reports: its host and devices (wire records shared by agent and API)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from suanli.domain.serving import ReplicaOrder, ReplicaReport
from suanli.domain.specs import MAX_INT32, MAX_INT64, Label, Name, Spec

Health = Literal["ok", "warning", "critical", "unknown"]


class DeviceReport(Spec):
    index: int = Field(ge=0, le=1023)
    name: str = Field(min_length=1, max_length=200, description="as the vendor tool prints it")
    uuid: str | None = Field(default=None, max_length=128)
    memory_mb: int | None = Field(default=None, ge=0, le=MAX_INT64)
    health: Health = "unknown"
    temperature_c: int | None = Field(default=None, ge=-273, le=1000)
    utilization_pct: int | None = Field(default=None, ge=0, le=100)
    ecc_errors: int | None = Field(default=None, ge=0, le=MAX_INT32)


class Registration(Spec):
    name: Name
    data_center: Name
    hostname: str = Field(min_length=1, max_length=255)
    island: Label = ""
    cpu_model: str = Field(default="", max_length=200)
    cpu_cores: int = Field(ge=1, le=4096)
    memory_mb: int = Field(ge=1, le=MAX_INT64)
    detector: str = Field(max_length=32)
    driver_version: str | None = Field(default=None, max_length=64)
    devices: list[DeviceReport] = Field(default_factory=list, max_length=64)


class Heartbeat(Spec):
    node: Name
    devices: list[DeviceReport] = Field(default_factory=list, max_length=64)
    replicas: list[ReplicaReport] | None = Field(
        default=None, max_length=1024, description="None: this agent does not run replicas"
    )


class RegistrationReply(Spec):
    node: str
    state: str
    heartbeat_interval_s: float
    health_check_due: bool = False  # the server asks an idle ready node for a health check
    replicas: list[ReplicaOrder] = Field(default_factory=list)  # what this node should run
