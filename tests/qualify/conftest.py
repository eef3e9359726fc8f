"""Small, fast settings for the qualification tests: the packaged thresholds with the CPU's
sizes cut down, run at a small time_scale (``standard`` then takes about a second)."""

from __future__ import annotations

import pytest

from suanli.qualify.thresholds import Thresholds, load_thresholds

TIME_SCALE = 0.01


@pytest.fixture(scope="session")
def thresholds() -> Thresholds:
    base = load_thresholds()
    small = {"copy_mib": 8, "host_copy_mib": 8, "all_reduce_mib": 4}
    cpu = base.sizes.cpu.model_copy(update=small)
    # for tests that dress the CPU up as an accelerator
    accelerator = base.sizes.accelerator.model_copy(update={**small, "matmul_n": 256})
    sizes = base.sizes.model_copy(update={"cpu": cpu, "accelerator": accelerator})
    return base.model_copy(update={"sizes": sizes})
