"""Input records for datasets, workloads and what they produce (wire and file shapes)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from suanli.catalog.chips import load_catalog
from suanli.domain.specs import ChipName, Country, Label, Name, Spec

WorkloadKind = Literal["training", "fine_tune", "inference", "compression", "rental"]
ArtifactKind = Literal["weights", "adapter", "compressed", "model"]


class DatasetSpec(Spec):
    """A tenant's data, bound to the country it must stay in."""

    name: Name
    country: Country
    description: Label = ""


class WorkloadInputs(Spec):
    datasets: list[Name] = Field(default_factory=list, max_length=100)
    artifacts: list[Name] = Field(default_factory=list, max_length=100)


Topology = Literal["node", "island", "data_center", "any"]
Priority = Literal["high", "spot"]
Precision = Literal["bf16", "fp16", "fp8", "int8", "int4", "awq", "gptq", "q4_1"]


def _stack(value: object) -> str:
    stacks = {c.software_stack.casefold(): c.software_stack for c in load_catalog()}
    if not isinstance(value, str) or value.casefold() not in stacks:
        raise ValueError(
            f"unknown software stack {value!r}; one of {', '.join(sorted(stacks.values()))}"
        )
    return stacks[value.casefold()]


StackName = Annotated[str, BeforeValidator(_stack)]


class WorkloadSpec(WorkloadInputs):
    """A workload asking for accelerators. With ``node`` it is placed there at once (or
    refused); without, it waits ``pending`` until the scheduler places it.

    ``chips`` (any of these models), ``stacks`` (any chip on these software stacks) and
    ``min_memory_gb`` constrain the chip, every part given must hold; ``gang``: all
    accelerators at once within one ``topology`` (node, island, data center, anywhere of
    one chip), else independent replicas; ``spot`` work may be preempted by ``high``;
    ``model_id`` and ``precision`` let the scheduler check the memory fit and rank chips by
    throughput."""

    name: Name
    kind: WorkloadKind
    node: Name | None = None
    accelerators: int = Field(ge=1, le=4096)
    chips: list[ChipName] = Field(default_factory=list, max_length=50)
    stacks: list[StackName] = Field(default_factory=list, max_length=20)
    min_memory_gb: float | None = Field(default=None, gt=0, le=100_000)
    gang: bool = True
    topology: Topology = "node"
    priority: Priority = "high"
    model_id: Label | None = None  # a model of the catalog (checked by the service)
    precision: Precision = "bf16"

    @model_validator(mode="after")
    def _node_alone(self) -> WorkloadSpec:
        if self.node is not None and self.topology != "node":
            raise ValueError("a workload on a named node has topology node")
        return self


class OutputSpec(Spec):
    name: Name
    kind: ArtifactKind


class FinishSpec(Spec):
    outputs: list[OutputSpec] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _unique(self) -> FinishSpec:
        names = [o.name for o in self.outputs]
        if len(names) != len(set(names)):
            raise ValueError("output names must be unique")
        return self


class EvaluateSpec(WorkloadInputs):
    """Where may this workload run? (a dry run over the whole fleet)"""

    tenant: Name
    kind: WorkloadKind = "training"
    accelerators: int = Field(default=1, ge=1, le=4096)


class ExportSpec(Spec):
    destination_country: Country
