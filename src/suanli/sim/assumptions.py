"""Performance assumptions for planning: figures the chip catalog leaves empty.

The catalog gives no official per-chip FLOPS for the Ascend 910B, and the perf model never
guesses one. A simulation must still run work there at some speed, so the simulator takes
a file of *assumptions*, fed to ``PerfModel(calibration=...)`` exactly as a qualification
run's measurements would be::

    chips:
      Ascend 910B:
        matmul_bf16_tflops: 280
        memory_bandwidth_gbps: 1600
        source: "unofficial; user-measured ~315 TFLOPS BF16 matmul on 910B2"

Metrics are those of ``suanli.perf.model.CALIBRATION_METRICS``; ``source`` says where a
figure comes from and is shown in every report. Without a file the built-in
``DEFAULT_ASSUMPTIONS`` (the same figures as ``examples/perf-assumptions.yaml``) apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from suanli.catalog.chips import load_catalog
from suanli.errors import ValidationError
from suanli.perf.model import CALIBRATION_METRICS, PerfModel

__all__ = ["DEFAULT_ASSUMPTIONS", "Assumption", "load_assumptions", "parse_assumptions"]


@dataclass(frozen=True, slots=True)
class Assumption:
    chip: str
    metric: str
    value: float
    source: str


DEFAULT_SOURCE = "planning assumption, unofficial; user-measured ~315 TFLOPS BF16 matmul on 910B2"
DEFAULT_ASSUMPTIONS: tuple[Assumption, ...] = (
    Assumption("Ascend 910B", "matmul_bf16_tflops", 280.0, DEFAULT_SOURCE),
    Assumption("Ascend 910B", "matmul_fp16_tflops", 280.0, DEFAULT_SOURCE),
    Assumption("Ascend 910B", "memory_bandwidth_gbps", 1600.0, DEFAULT_SOURCE),
)


def parse_assumptions(text: str, origin: str = "perf assumptions") -> tuple[Assumption, ...]:
    """Read the YAML shape above; ``ValidationError`` naming the field at fault."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{origin}: not YAML: {exc}", "chips") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("chips"), Mapping):
        raise ValidationError(f"{origin}: expected a mapping 'chips: {{CHIP: {{...}}}}'", "chips")
    if set(data) - {"chips", "description"}:
        extra = ", ".join(sorted(str(k) for k in set(data) - {"chips", "description"}))
        raise ValidationError(f"{origin}: unknown fields {extra}", extra)
    catalog = load_catalog()
    out: list[Assumption] = []
    for name, figures in data["chips"].items():
        where = f"chips.{name}"
        chip = catalog.get(str(name), field=where).model
        if not isinstance(figures, Mapping):
            raise ValidationError(f"{origin}: {where} must map metrics to numbers", where)
        source = str(figures.get("source", "")).strip()
        if not source:
            raise ValidationError(f"{origin}: {where}.source: say where the figures come from",
                                  f"{where}.source")  # fmt: skip
        for metric, value in figures.items():
            if metric == "source":
                continue
            if metric not in CALIBRATION_METRICS:
                known = ", ".join(CALIBRATION_METRICS)
                raise ValidationError(
                    f"{origin}: {where}.{metric}: unknown metric; known: {known}",
                    f"{where}.{metric}",
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValidationError(
                    f"{origin}: {where}.{metric} must be a positive number", f"{where}.{metric}"
                )
            out.append(Assumption(chip, str(metric), float(value), source))
    return tuple(out)


def load_assumptions(path: str | Path) -> tuple[Assumption, ...]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read {p}: {exc.strerror}", "--perf") from None
    return parse_assumptions(text, p.name)


def perf_model(assumptions: tuple[Assumption, ...] = DEFAULT_ASSUMPTIONS) -> PerfModel:
    """The perf model with the assumptions in place of missing (or catalog) figures."""
    return PerfModel(calibration={(a.chip, a.metric): a.value for a in assumptions})
