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

import pydantic
import yaml
from pydantic import Field, model_validator

from suanli.domain.specs import DataCenterSpec, NodeSpec, Spec
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


def _line_map(text: str) -> dict[tuple[str | int, ...], int]:
    """Path of every YAML node -> its 1-based line."""
    out: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        out[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                out[(*path, str(key.value))] = key.start_mark.line + 1
                walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return out


def format_path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_for(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def parse_text(text: str) -> ParsedFleet:
    try:
        data = yaml.safe_load(text)
        lines = _line_map(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ValidationError(f"fleet file is not valid YAML: {exc}", None, line) from None
    return parse_data(data, lines)


def parse_data(data: Any, lines: dict[tuple[str | int, ...], int] | None = None) -> ParsedFleet:
    lines = lines or {}
    try:
        fleet = FleetSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _first_error(exc, (), lines) from None
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
                try:
                    spec = NodeSpec.model_validate(raw)
                except pydantic.ValidationError as exc:
                    raise _first_error(exc, loc, lines) from None
                if spec.name in where:
                    raise ValidationError(
                        f"node {spec.name!r} is declared twice (also at {where[spec.name]})",
                        format_path(loc),
                        _line_for(lines, loc),
                    )
                where[spec.name] = format_path(loc)
                nodes.append(spec)
    names = [dc.name for dc in dcs]
    for d, name in enumerate(names):
        if names.index(name) != d:
            loc = ("data_centers", d, "name")
            raise ValidationError(
                f"data center {name!r} is declared twice", format_path(loc), _line_for(lines, loc)
            )
    return ParsedFleet(dcs, nodes)


def _expand(
    entry: FleetNodeSpec, loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]
) -> list[str]:
    if entry.replicas is None:
        return [entry.name]
    try:
        return [entry.name.format(i=i) for i in range(entry.first, entry.first + entry.replicas)]
    except (KeyError, ValueError, IndexError) as exc:
        field = (*loc, "name")
        raise ValidationError(
            f"bad name pattern {entry.name!r}: {exc}", format_path(field), _line_for(lines, field)
        ) from None


def _first_error(
    exc: pydantic.ValidationError,
    prefix: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
) -> ValidationError:
    err = exc.errors()[0]
    loc = (*prefix, *err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
    return ValidationError(
        f"{format_path(loc)}: {msg}{more}", format_path(loc), _line_for(lines, loc)
    )
