"""Input records for datasets, workloads and what they produce (wire and file shapes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from suanli.domain.specs import Country, Label, Name, Spec

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


class WorkloadSpec(WorkloadInputs):
    """A workload placed on a named node (the scheduler will choose nodes later)."""

    name: Name
    kind: WorkloadKind
    node: Name
    accelerators: int = Field(ge=1, le=4096)


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
