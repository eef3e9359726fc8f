"""Qualification thresholds and test sizes: configuration (``data/thresholds.yaml``).

``load_thresholds`` validates a file like the fleet and rule files do: a bad value names
its field and line. ``Thresholds.criteria`` turns the configuration and a catalog chip into
concrete limits, each with the rule in words; ``Thresholds.plan`` gives the sizes and
durations of a level, scaled by ``time_scale``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from suanli.catalog.chips import Chip, load_catalog, normalize_name
from suanli.domain.specs import Spec
from suanli.domain.yamldoc import error_at, parse_yaml, validate
from suanli.errors import UnknownChipError, ValidationError
from suanli.qualify.model import Level

__all__ = ["Criteria", "Limit", "Plan", "Thresholds", "load_thresholds", "parse_thresholds"]

Kind = Literal["cpu", "accelerator"]
AccelPrecision = Literal["bf16", "fp16", "fp8", "int8"]
CpuPrecision = Literal["fp32", "fp64"]
Fraction = Annotated[float, Field(gt=0, le=1)]
Tolerance = Annotated[float, Field(ge=0, lt=1)]
Positive = Annotated[float, Field(gt=0)]
MIB = 1 << 20


class AcceleratorCriteria(Spec):
    matmul_fraction: Fraction | None = None
    matmul_min_tflops: dict[AccelPrecision, Positive] = Field(default_factory=dict)
    memory_bandwidth_fraction: Fraction | None = None
    memory_bandwidth_min_gbps: Positive | None = None
    memory_size_fraction: Fraction | None = None
    memory_min_gib: Positive | None = None
    host_bandwidth_min_gbps: Positive | None = None
    all_reduce_bus_min_gbps: Positive | None = None
    peer_tolerance: Tolerance = 0.10
    soak_drop_tolerance: Tolerance = 0.15
    max_mismatches: Annotated[int, Field(ge=0)] = 0


class CpuCriteria(Spec):
    matmul_min_gflops: dict[CpuPrecision, Positive] = Field(default_factory=dict)
    memory_bandwidth_min_gbps: Positive | None = None
    host_copy_min_gbps: Positive | None = None
    all_reduce_bus_min_gbps: Positive | None = None
    memory_min_gib: Positive | None = None
    peer_tolerance: Tolerance = 0.25
    soak_drop_tolerance: Tolerance = 0.25
    max_mismatches: Annotated[int, Field(ge=0)] = 0


class AcceleratorSizes(Spec):
    matmul_n: Annotated[int, Field(ge=64, le=65536)] = 8192
    copy_mib: Annotated[int, Field(ge=1)] = 1024
    host_copy_mib: Annotated[int, Field(ge=1)] = 1024
    all_reduce_mib: Annotated[int, Field(ge=1)] = 256
    integrity_fraction: Fraction = 0.8


class CpuSizes(Spec):
    matmul_n: Annotated[int, Field(ge=16, le=16384)] = 512
    copy_mib: Annotated[int, Field(ge=1)] = 64
    host_copy_mib: Annotated[int, Field(ge=1)] = 64
    all_reduce_mib: Annotated[int, Field(ge=1)] = 32
    integrity_mib: Annotated[int, Field(ge=1)] = 256


class Sizes(Spec):
    accelerator: AcceleratorSizes = Field(default_factory=AcceleratorSizes)
    cpu: CpuSizes = Field(default_factory=CpuSizes)


class LevelPlan(Spec):
    matmul_seconds: Positive
    bandwidth_seconds: Positive
    integrity_patterns: Annotated[int, Field(ge=1, le=6)]
    integrity_passes: Annotated[int, Field(ge=1)] = 1
    all_reduce_seconds: Positive
    soak_seconds: Positive
    soak_samples: Annotated[int, Field(ge=6)]


class Levels(Spec):
    standard: LevelPlan
    long: LevelPlan


@dataclass(frozen=True)
class Limit:
    """A resolved threshold (``None``: nothing to judge against) and its rule in words."""

    threshold: float | None
    rule: str


@dataclass(frozen=True)
class Criteria:
    """The limits for one backend kind and chip, in the units the runner reports."""

    kind: Kind
    matmul: Mapping[str, Limit]  # per precision, in GFLOPS (cpu) or TFLOPS/TOPS
    memory_bandwidth: Limit  # GB/s
    memory_size: Limit  # GiB
    host_bandwidth: Limit  # GB/s
    all_reduce: Limit  # GB/s bus bandwidth
    peer_tolerance: float
    soak_drop_tolerance: float
    max_mismatches: int

    @property
    def matmul_scale(self) -> float:
        """Operations per second in one reported unit."""
        return 1e9 if self.kind == "cpu" else 1e12

    def matmul_unit(self, precision: str) -> str:
        if self.kind == "cpu":
            return "GFLOPS"
        return "TOPS" if precision == "int8" else "TFLOPS"


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one level for one backend kind, after ``time_scale``."""

    level: Level
    matmul_n: int
    copy_bytes: int
    host_copy_bytes: int
    all_reduce_bytes: int
    integrity_bytes: int | None  # cpu: a size; accelerators use integrity_fraction
    integrity_fraction: float | None  # of free device memory
    matmul_seconds: float
    bandwidth_seconds: float
    integrity_patterns: int
    integrity_passes: int
    all_reduce_seconds: float
    soak_seconds: float
    soak_samples: int


class Thresholds(Spec):
    version: str = Field(min_length=1, max_length=64)
    accelerator: AcceleratorCriteria = Field(default_factory=AcceleratorCriteria)
    cpu: CpuCriteria = Field(default_factory=CpuCriteria)
    chips: dict[str, AcceleratorCriteria] = Field(default_factory=dict)  # by catalog name
    sizes: Sizes = Field(default_factory=Sizes)
    levels: Levels

    def criteria(self, kind: Kind, chip: Chip | None) -> Criteria:
        if kind == "cpu":
            return _cpu_criteria(self.cpu)
        merged = self.accelerator
        override = None
        if chip is not None:
            names = {normalize_name(n) for n in chip.names}
            found = [o for name, o in self.chips.items() if normalize_name(name) in names]
            override = found[0] if found else None
        if override is not None:
            merged = merged.model_copy(update=override.model_dump(exclude_unset=True))
        return _accelerator_criteria(merged, chip, override is not None)

    def plan(self, level: Level, kind: Kind, time_scale: float = 1.0) -> Plan:
        if not time_scale > 0:
            raise ValidationError("time_scale must be positive", "time_scale")
        lp = self.levels.long if level == "long" else self.levels.standard
        acc, cpu = self.sizes.accelerator, self.sizes.cpu
        sizes = cpu if kind == "cpu" else acc
        return Plan(
            level=level,
            matmul_n=sizes.matmul_n,
            copy_bytes=sizes.copy_mib * MIB,
            host_copy_bytes=sizes.host_copy_mib * MIB,
            all_reduce_bytes=sizes.all_reduce_mib * MIB,
            integrity_bytes=max(MIB, int(cpu.integrity_mib * MIB * time_scale)) & ~3
            if kind == "cpu"
            else None,
            integrity_fraction=None
            if kind == "cpu"
            else min(1.0, acc.integrity_fraction * time_scale),
            matmul_seconds=lp.matmul_seconds * time_scale,
            bandwidth_seconds=lp.bandwidth_seconds * time_scale,
            integrity_patterns=lp.integrity_patterns,
            integrity_passes=lp.integrity_passes,
            all_reduce_seconds=lp.all_reduce_seconds * time_scale,
            soak_seconds=lp.soak_seconds * time_scale,
            soak_samples=lp.soak_samples,
        )


def _absolute(value: float | None, what: str, unit: str, source: str) -> Limit:
    if value is None:
        return Limit(None, f"no {what} minimum is configured")
    return Limit(value, f">= {value:g} {unit} ({source})")


def _cpu_criteria(c: CpuCriteria) -> Criteria:
    src = "configured CPU minimum"
    return Criteria(
        kind="cpu",
        matmul={
            p: _absolute(c.matmul_min_gflops.get(p), f"{p} matmul", "GFLOPS", src)
            for p in ("fp32", "fp64")
        },
        memory_bandwidth=_absolute(c.memory_bandwidth_min_gbps, "copy bandwidth", "GB/s", src),
        memory_size=_absolute(c.memory_min_gib, "memory size", "GiB", src),
        host_bandwidth=_absolute(c.host_copy_min_gbps, "host-copy bandwidth", "GB/s", src),
        all_reduce=_absolute(c.all_reduce_bus_min_gbps, "all-reduce", "GB/s", src),
        peer_tolerance=c.peer_tolerance,
        soak_drop_tolerance=c.soak_drop_tolerance,
        max_mismatches=c.max_mismatches,
    )


def _from_catalog(
    minimum: float | None,
    fraction: float | None,
    figure: Decimal | None,
    what: str,
    unit: str,
    chip: Chip | None,
    overridden: bool,
) -> Limit:
    """An absolute minimum wins; else ``fraction`` x the catalog figure; else no threshold."""
    if minimum is not None:
        name = chip.model if chip is not None else "this chip"
        return Limit(minimum, f">= {minimum:g} {unit} (configured minimum for {name})")
    if chip is None:
        return Limit(None, f"no chip given, so no catalog {what} to judge against")
    if figure is None:
        return Limit(None, f"the catalog has no {what} for {chip.model} and no minimum is set")
    if fraction is None:
        return Limit(None, f"no fraction of the catalog {what} is configured")
    value = fraction * float(figure)
    where = f"{chip.model}{', chip override' if overridden else ''}"
    return Limit(value, f">= {fraction:g} x {figure} {unit} {what} ({where}) = {value:.4g} {unit}")


def _accelerator_criteria(c: AcceleratorCriteria, chip: Chip | None, over: bool) -> Criteria:
    peaks: dict[str, Decimal | None] = {
        "bf16": chip.bf16_dense_tflops if chip else None,
        "fp16": chip.fp16_dense_tflops if chip else None,
        "fp8": chip.fp8_dense_tflops if chip else None,
        "int8": chip.int8_dense_tops if chip else None,
    }
    matmul = {
        p: _from_catalog(
            c.matmul_min_tflops.get(p),  # type: ignore[call-overload]
            c.matmul_fraction,
            peak,
            f"dense {p.upper()} peak",
            "TOPS" if p == "int8" else "TFLOPS",
            chip,
            over,
        )
        for p, peak in peaks.items()
    }
    memory_gb = chip.memory_gb if chip else None
    bandwidth = chip.memory_bw_gbps if chip else None
    return Criteria(
        kind="accelerator",
        matmul=matmul,
        memory_bandwidth=_from_catalog(
            c.memory_bandwidth_min_gbps,
            c.memory_bandwidth_fraction,
            bandwidth,
            "memory bandwidth",
            "GB/s",
            chip,
            over,
        ),
        memory_size=_from_catalog(
            c.memory_min_gib, c.memory_size_fraction, memory_gb, "memory size", "GiB", chip, over
        ),
        host_bandwidth=_absolute(c.host_bandwidth_min_gbps, "host bandwidth", "GB/s", "configured"),
        all_reduce=_absolute(c.all_reduce_bus_min_gbps, "all-reduce", "GB/s", "configured"),
        peer_tolerance=c.peer_tolerance,
        soak_drop_tolerance=c.soak_drop_tolerance,
        max_mismatches=c.max_mismatches,
    )


def parse_thresholds(text: str) -> Thresholds:
    """Validate a thresholds document; errors name the field and line."""
    data, lines = parse_yaml(text, "thresholds file")
    if not isinstance(data, dict):
        raise ValidationError("a thresholds file is a YAML mapping with version and levels")
    out = validate(Thresholds, data, lines)
    seen: dict[str, str] = {}
    for raw in out.chips:
        try:
            model = load_catalog().get(raw).model
        except UnknownChipError as exc:
            raise error_at(f"chips.{raw}: {exc.message}", ("chips", raw), lines) from None
        if model in seen:
            raise error_at(
                f"chips: {raw!r} and {seen[model]!r} name the same chip ({model})",
                ("chips", raw),
                lines,
            )
        seen[model] = raw
    return out


def load_thresholds(path: Path | None = None) -> Thresholds:
    """The thresholds in ``path``, or the packaged defaults."""
    if path is None:
        text = resources.files("suanli.qualify").joinpath("data/thresholds.yaml").read_text("utf-8")
    else:
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ValidationError(f"cannot read thresholds file {path}: {exc.strerror}") from None
    return parse_thresholds(text)
