"""Deployments and replicas: what an operator asks for, what an agent is told and reports."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from suanli.domain.specs import MAX_INT32, ChipName, Name, Spec

Routing = Literal["round_robin", "least_outstanding", "prefix_cache"]
ReplicaState = Literal[
    "pending", "starting", "ready", "backoff", "draining", "stopped", "failed", "crashed"
]
Path = Annotated[str, Field(min_length=1, max_length=4096)]


class LoraSpec(Spec):
    name: Name = Field(description="adapter name clients pass as the model")
    path: Path = Field(description="adapter directory on the node")


class DeploymentSpec(Spec):
    """Serve a catalog model under ``name`` with ``replicas`` engine processes."""

    model: str = Field(min_length=1, max_length=120, description="model catalog id")
    name: Name | None = Field(default=None, description="name clients call [default: model id]")
    engine: str | None = Field(
        default=None, max_length=32, description="engine adapter [default: chosen per chip]"
    )
    replicas: int = Field(default=1, ge=0, le=256)
    accelerators: int | None = Field(
        default=None, ge=0, le=64, description="per replica [default: the fewest that fit]"
    )
    chip: ChipName | None = Field(default=None, description="only this chip model")
    node: Name | None = Field(default=None, description="pin every replica to this node")
    precision: str | None = Field(default=None, max_length=16)
    context_length: int | None = Field(default=None, ge=1, le=MAX_INT32)
    model_path: Path | None = Field(
        default=None, description="weights on the node [default: the catalog's local copy]"
    )
    lora: list[LoraSpec] = Field(default_factory=list, max_length=64)
    routing: Routing = "prefix_cache"
    tenant: Name | None = Field(default=None, description="private to this tenant")
    endpoints: list[Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=255)]] | None = (
        Field(
            default=None,
            max_length=256,
            description="serve through OpenAI-compatible servers that already run elsewhere "
            "(their /v1 base URLs); no replica is started, one replica per URL",
        )
    )

    @field_validator("model")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class DeploymentPatch(Spec):
    replicas: int = Field(ge=0, le=256)


class ReplicaOrder(Spec):
    """The server's word to an agent: run (or drain) this replica with these settings."""

    id: int
    deployment: str
    model: str
    kind: Literal["chat", "embedding"]
    engine: str
    model_path: str | None  # None: the agent resolves the catalog's local copy
    devices: list[int]
    precision: str | None = None
    context_length: int | None = None
    lora: list[tuple[str, str]] = Field(default_factory=list)
    desired: Literal["run", "drain"] = "run"


class ReplicaReport(Spec):
    """An agent's word on a replica it runs."""

    id: int = Field(ge=1, le=MAX_INT32)
    state: ReplicaState
    endpoint: str | None = Field(default=None, max_length=255)
    restarts: int = Field(default=0, ge=0, le=MAX_INT32)
    last_error: str = Field(default="", max_length=4000)
