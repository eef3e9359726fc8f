"""What a qualification run produces: one ``Measurement`` per (test, device, metric).

A measurement states its pass rule, what was measured and the threshold it was held to.
"passed" always comes with a measured value; a test that could not run is "skipped" with
the reason in ``detail``, never "passed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast, get_args

from suanli.errors import ValidationError

__all__ = ["LEVELS", "Level", "Measurement", "QualificationReport", "Status"]

Level = Literal["quick", "standard", "long"]
Status = Literal["passed", "failed", "skipped"]
LEVELS: tuple[Level, ...] = get_args(Level)
STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True)
class Measurement:
    """One judged figure. ``rule`` says in words what passes; ``threshold`` is its number."""

    test: str
    device: str | None
    metric: str
    value: float | None
    unit: str
    threshold: float | None
    rule: str
    status: Status
    detail: str = ""
    samples: tuple[float, ...] = ()
    sample_interval_s: float = 0.0  # seconds between ``samples`` (soak), 0 when none
    sample_unit: str = ""  # unit of ``samples`` when it differs from ``unit``

    def __post_init__(self) -> None:
        if self.status == "passed" and (self.value is None or math.isnan(self.value)):
            raise ValueError(f"{self.test}: a test cannot pass without a measured value")

    @property
    def where(self) -> str:
        return f"{self.test} on {self.device}" if self.device else self.test

    def sentence(self) -> str:
        """``matmul_fp32 on cpu:1: 3.1 GFLOPS; rule: ... (detail)``."""
        measured = "not measured" if self.value is None else f"{self.value:.4g} {self.unit}"
        text = f"{self.where}: {measured}; rule: {self.rule}"
        return f"{text} ({self.detail})" if self.detail else text

    def to_json(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "device": self.device,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "threshold": self.threshold,
            "rule": self.rule,
            "status": self.status,
            "detail": self.detail,
            "samples": list(self.samples),
            "sample_interval_s": self.sample_interval_s,
            "sample_unit": self.sample_unit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        status = data["status"]
        if status not in STATUSES:
            raise ValidationError(f"unknown measurement status {status!r}", "status")

        def num(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(
            test=str(data["test"]),
            device=None if data.get("device") is None else str(data["device"]),
            metric=str(data["metric"]),
            value=num("value"),
            unit=str(data.get("unit", "")),
            threshold=num("threshold"),
            rule=str(data.get("rule", "")),
            status=cast(Status, status),
            detail=str(data.get("detail", "")),
            samples=tuple(float(s) for s in data.get("samples", ())),
            sample_interval_s=float(data.get("sample_interval_s", 0.0)),
            sample_unit=str(data.get("sample_unit", "")),
        )


@dataclass(frozen=True)
class QualificationReport:
    level: Level
    backend: str
    chip: str | None
    devices: tuple[str, ...]
    started_at: datetime
    finished_at: datetime
    measurements: tuple[Measurement, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """No failed measurement and at least one passed one."""
        statuses = {m.status for m in self.measurements}
        return "failed" not in statuses and "passed" in statuses

    @property
    def failures(self) -> list[Measurement]:
        return [m for m in self.measurements if m.status == "failed"]

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def counts(self) -> dict[Status, int]:
        out: dict[Status, int] = dict.fromkeys(STATUSES, 0)
        for m in self.measurements:
            out[m.status] += 1
        return out

    def summary(self) -> str:
        """One line: ``passed: ...`` or ``failed: <test> on <device> (...); ...``."""
        counts = self.counts()
        tally = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        if self.failures:
            named = "; ".join(f"{m.where} ({_short(m)})" for m in self.failures)
            return f"failed: {named} [{tally}]"
        if not counts["passed"]:
            return f"failed: nothing was measured [{tally}]"
        return f"passed: {self.level} qualification on {len(self.devices)} device(s) [{tally}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "backend": self.backend,
            "chip": self.chip,
            "devices": list(self.devices),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "passed": self.passed,
            "summary": self.summary(),
            "measurements": [m.to_json() for m in self.measurements],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QualificationReport:
        """The inverse of ``to_json`` (``passed`` and ``summary`` are recomputed)."""
        level = data.get("level")
        if level not in LEVELS:
            raise ValidationError(f"unknown qualification level {level!r}", "level")
        try:
            started = datetime.fromisoformat(data["started_at"])
            finished = datetime.fromisoformat(data["finished_at"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"bad report timestamps: {exc}", "started_at") from None
        return cls(
            level=cast(Level, level),
            backend=str(data["backend"]),
            chip=None if data.get("chip") is None else str(data["chip"]),
            devices=tuple(str(d) for d in data.get("devices", ())),
            started_at=started,
            finished_at=finished,
            measurements=tuple(Measurement.from_json(m) for m in data.get("measurements", ())),
        )


def _short(m: Measurement) -> str:
    measured = "no value" if m.value is None else f"{m.metric} {m.value:.4g} {m.unit}".strip()
    if m.threshold is not None:
        measured += f", threshold {m.threshold:.4g}"
    return f"{measured}: {m.detail}" if m.detail else measured
