"""The declarative fleet file: data centers with their nodes, parsed with line numbers.

```yaml
data_centers:
  - name: nx-zhongwei
    country: CN
    owner_type: state
    costs: [{chip: Ascend 910B, per_accelerator_hour: "9.80", currency: CNY}]
    nodes:
      - {name: "nx-910b-{i:03d}", replicas: 16, chip: Ascend 910B, count: 8, island: hccs-a}
```
A node entry with ``replicas: N`` stands for N nodes named by formatting ``name`` with
``i`` = first..first+N-1 (``first`` defaults to 1). Errors name the row
(``data_centers[0].nodes[2].chip``) and its line.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from suanli.domain.specs import DataCenterSpec, NodeSpec, Spec
from suanli.domain.yamldoc import Lines, format_path, line_for, parse_yaml, validate
from suanli.errors import ValidationError

MAX_REPLICAS = 10_000


class FleetNodeSpec(Spec):
    name: str = Field(min_length=1, max_length=80)
    replicas: int | None = Field(default=None, ge=1, le=MAX_REPLICAS)
    first: int = Field(default=1, ge=0, description="first value of {i} with replicas")
    chip: str | None = None
    count: int = 0
    memory_gb: int | None = None
    island: str = ""
    cpu_cores: int | None = None
    memory_mb: int | None = None
    state: str = "registered"

    @model_validator(mode="after")
    def _pattern(self) -> FleetNodeSpec:
        if self.replicas is not None and "{i" not in self.name:
            raise ValueError("with replicas, name must contain a {i} placeholder, e.g. gpu-{i:03d}")
        return self


class FleetDataCenterSpec(DataCenterSpec):
    nodes: list[FleetNodeSpec] = Field(default_factory=list)


class FleetSpec(Spec):
    data_centers: list[FleetDataCenterSpec] = Field(min_length=1)


class ParsedFleet:
    """A validated fleet: data centers and fully expanded, validated node specs."""

    def __init__(self, data_centers: list[DataCenterSpec], nodes: list[NodeSpec]) -> None:
        self.data_centers = data_centers
        self.nodes = nodes


def parse_text(text: str) -> ParsedFleet:
    data, lines = parse_yaml(text, "fleet file")
    return parse_data(data, lines)


def parse_data(data: Any, lines: Lines | None = None) -> ParsedFleet:
    lines = lines or {}
    fleet = validate(FleetSpec, data, lines)
    dcs: list[DataCenterSpec] = []
    nodes: list[NodeSpec] = []
    where: dict[str, str] = {}
    for d, dc in enumerate(fleet.data_centers):
        dcs.append(DataCenterSpec.model_validate(dc.model_dump(exclude={"nodes"})))
        for n, entry in enumerate(dc.nodes):
            loc: tuple[str | int, ...] = ("data_centers", d, "nodes", n)
            for name in _expand(entry, loc, lines):
                raw = entry.model_dump(exclude={"replicas", "first"}, exclude_unset=True)
                raw.update(name=name, data_center=dc.name)
                spec = validate(NodeSpec, raw, lines, loc)
                if spec.name in where:
                    raise ValidationError(
                        f"node {spec.name!r} is declared twice (also at {where[spec.name]})",
                        format_path(loc),
                        line_for(lines, loc),
                    )
                where[spec.name] = format_path(loc)
                nodes.append(spec)
    names = [dc.name for dc in dcs]
    for d, name in enumerate(names):
        if names.index(name) != d:
            loc = ("data_centers", d, "name")
            raise ValidationError(
                f"data center {name!r} is declared twice", format_path(loc), line_for(lines, loc)
            )
    return ParsedFleet(dcs, nodes)


def _expand(entry: FleetNodeSpec, loc: tuple[str | int, ...], lines: Lines) -> list[str]:
    if entry.replicas is None:
        return [entry.name]
    try:
        return [entry.name.format(i=i) for i in range(entry.first, entry.first + entry.replicas)]
    except (KeyError, ValueError, IndexError) as exc:
        field = (*loc, "name")
        raise ValidationError(
            f"bad name pattern {entry.name!r}: {exc}", format_path(field), line_for(lines, field)
        ) from None
