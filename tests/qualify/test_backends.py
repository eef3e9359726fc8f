"""The NumPy backend's primitives and backend selection."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from suanli.errors import ValidationError
from suanli.qualify.backends import (
    PATTERNS,
    NumpyBackend,
    UnsupportedError,
    make_backend,
    numpy_backend,
)
from suanli.qualify.backends.base import MIN_REPS, repeat_timed

HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_make_backend() -> None:
    assert make_backend("numpy", cpu_devices=3).devices == ("cpu:0", "cpu:1", "cpu:2")
    with pytest.raises(ValidationError, match="at least 1"):
        make_backend("numpy", cpu_devices=0)
    with pytest.raises(ValidationError, match="unknown backend"):
        make_backend("tpu")  # type: ignore[arg-type]


@pytest.mark.skipif(HAS_TORCH, reason="checks the behaviour without torch")
def test_without_torch_auto_is_numpy_and_cuda_says_why_not() -> None:
    assert make_backend("auto", cpu_devices=2).name == "numpy"
    with pytest.raises(ValidationError, match="backend cuda needs torch"):
        make_backend("cuda")
    with pytest.raises(ValidationError, match="backend npu needs torch and torch_npu"):
        make_backend("npu")


def test_patterns_round_trip_and_flipped_bits_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numpy_backend, "CHUNK_WORDS", 1000)  # several chunks
    backend = NumpyBackend()
    buf = backend.allocate(0, 4500)
    seen = []
    for pattern in PATTERNS:
        backend.write_pattern(buf, pattern)
        assert backend.count_mismatches(buf, pattern) == 0, pattern.name
        seen.append(buf.copy())
        backend.flip_bits(buf, [3, 32 * 1200 + 31, 32 * 4499])
        assert backend.count_mismatches(buf, pattern) == 3, pattern.name
    address = seen[4]
    assert address[0] != address[1000]  # each chunk holds different values
    assert len({tuple(s[:8]) for s in seen}) == len(PATTERNS)


def test_matmul_measures_and_checks_the_product() -> None:
    backend = NumpyBackend(2)
    run = backend.matmul([0, 1], "fp32", 128, 0.0)
    assert len(run.seconds) == 2
    assert all(s > 0 for s in run.seconds)
    assert run.bad_results == (0, 0)
    a, b, c = backend._operands_for(0, "fp32", 128)
    assert numpy_backend._checksum_ok(a, b, c, "fp32")
    c[5, 7] += 1.0
    assert not numpy_backend._checksum_ok(a, b, c, "fp32")
    with pytest.raises(UnsupportedError):
        backend.matmul([0], "bf16", 128, 0.0)


def test_all_reduce_sums_every_device() -> None:
    run = NumpyBackend(3).all_reduce(1 << 16, 0.0)
    assert run.wrong_elements == 0
    assert run.seconds > 0
    assert "numpy sum" in run.method


def test_repeat_timed_interleaves_and_repeats() -> None:
    calls: list[str] = []
    best = repeat_timed([lambda: calls.append("a"), lambda: calls.append("b")], 0.0)
    assert sorted(calls) == ["a"] * MIN_REPS + ["b"] * MIN_REPS
    assert all(sorted(calls[i : i + 2]) == ["a", "b"] for i in range(0, len(calls), 2))
    assert len(best) == 2
    assert all(t >= 0 for t in best)


def test_copies_are_timed() -> None:
    backend = NumpyBackend()
    assert backend.device_copy(0, 1 << 20, 0.0) > 0
    assert set(backend.host_copy(0, 1 << 20, 0.0)) == {"host_copy"}
    assert backend.sanity(0) == 0.0
    assert backend.memory_total(0) >= backend.memory_free(0) > 0
    assert np.__version__ in backend.runtime_info()
