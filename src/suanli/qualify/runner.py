"""Run a qualification level over a backend and collect the report.

quick: devices, runtime, memory size (seconds, no load). standard and long add matmul per
precision, device memory bandwidth, host bandwidth, memory integrity, all-reduce, soak and
peer comparison, with the sizes and durations of ``thresholds`` x ``time_scale``.

A test that raises is recorded as failed with the error (a crash under test is a finding);
``UnsupportedError`` precisions are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from suanli.catalog.chips import Chip
from suanli.qualify import checks
from suanli.qualify.backends.base import Backend
from suanli.qualify.model import Level, Measurement, QualificationReport
from suanli.qualify.thresholds import Thresholds

__all__ = ["QUICK_TESTS", "TESTS", "Progress", "run_suite", "tests_for"]

Progress = Callable[[str, int, int], None]
Check = Callable[[checks.Context], list[Measurement]]

QUICK_TESTS = ("devices", "runtime", "memory_size")
TESTS = (
    *QUICK_TESTS,
    "matmul",
    "memory_bandwidth",
    "host_bandwidth",
    "memory_integrity",
    "all_reduce",
    "soak",
    "peer_comparison",
)
_CHECKS: dict[str, Check] = {
    "devices": checks.check_devices,
    "runtime": checks.check_runtime,
    "memory_size": checks.check_memory_size,
    "matmul": checks.check_matmul,
    "memory_bandwidth": checks.check_memory_bandwidth,
    "host_bandwidth": checks.check_host_bandwidth,
    "memory_integrity": checks.check_memory_integrity,
    "all_reduce": checks.check_all_reduce,
    "soak": checks.check_soak,
}


def tests_for(level: Level) -> tuple[str, ...]:
    return QUICK_TESTS if level == "quick" else TESTS


def _planned_seconds(test: str, ctx: checks.Context) -> float:
    plan = ctx.plan
    if plan is None:
        return 0.0
    return {
        "matmul": plan.matmul_seconds * len(ctx.backend.precisions),
        "memory_bandwidth": plan.bandwidth_seconds,
        "host_bandwidth": plan.bandwidth_seconds,
        "all_reduce": plan.all_reduce_seconds,
        "soak": plan.soak_seconds,
    }.get(test, 0.0)


def run_suite(
    backend: Backend,
    level: Level,
    chip: Chip | None,
    thresholds: Thresholds,
    *,
    time_scale: float = 1.0,
    progress: Progress | None = None,
) -> QualificationReport:
    """Run ``level`` on every device of ``backend``; ``chip`` (the node's catalog chip)
    sets accelerator thresholds. ``progress(test, done, total)`` is called as each test
    starts, with the number of tests already done, and once more as ("done", total, total)."""
    started = datetime.now(UTC)
    plan = None if level == "quick" else thresholds.plan(level, backend.kind, time_scale)
    ctx = checks.Context(backend, chip, thresholds.criteria(backend.kind, chip), plan)
    names = tests_for(level)
    found: list[Measurement] = []
    for done, test in enumerate(names):
        if progress is not None:
            progress(test, done, len(names))
        try:
            backend.prepare(test, _planned_seconds(test, ctx))
            if test == "peer_comparison":
                found += checks.check_peers(
                    ctx, {f"matmul_{p}": ms for p, ms in ctx.matmul.items()}
                )
            else:
                found += _CHECKS[test](ctx)
        except Exception as exc:  # a test that crashes fails, naming the error
            found.append(
                Measurement(
                    test,
                    None,
                    "error",
                    None,
                    "",
                    None,
                    "runs without error",
                    "failed",
                    f"{type(exc).__name__}: {exc}",
                )
            )
    if progress is not None:
        progress("done", len(names), len(names))
    return QualificationReport(
        level=level,
        backend=backend.name,
        chip=chip.model if chip is not None else None,
        devices=tuple(backend.devices),
        started_at=started,
        finished_at=datetime.now(UTC),
        measurements=tuple(found),
    )
