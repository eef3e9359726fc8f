"""Small, fast settings for the qualification tests: the packaged thresholds with the CPU's
sizes cut down, run at a small time_scale (``standard`` then takes about a second).

The test machine may be shared with other work, which makes short CPU timings noisy; the
fixture widens the peer and soak tolerances to 0.5, and the fault tests inject faults far
beyond that (a device at 20% of its peers, throughput decaying to 10%)."""

from __future__ import annotations

import pytest

from suanli.qualify.thresholds import Thresholds, load_thresholds

TIME_SCALE = 0.01


@pytest.fixture(scope="session")
def thresholds() -> Thresholds:
    return tolerant_thresholds()


def tolerant_thresholds() -> Thresholds:
    """The packaged thresholds, small sizes, tolerances wide enough for a shared machine."""
    base = load_thresholds()
    small = {"copy_mib": 8, "host_copy_mib": 8, "all_reduce_mib": 4}
    cpu = base.sizes.cpu.model_copy(update=small)
    # for tests that dress the CPU up as an accelerator
    accelerator = base.sizes.accelerator.model_copy(update={**small, "matmul_n": 256})
    sizes = base.sizes.model_copy(update={"cpu": cpu, "accelerator": accelerator})
    cpu_criteria = base.cpu.model_copy(update={"peer_tolerance": 0.5, "soak_drop_tolerance": 0.5})
    # matmul long enough (0.15 s a precision at TIME_SCALE) for a steady peer comparison
    standard = base.levels.standard.model_copy(update={"matmul_seconds": 15})
    levels = base.levels.model_copy(update={"standard": standard})
    return base.model_copy(update={"sizes": sizes, "cpu": cpu_criteria, "levels": levels})
