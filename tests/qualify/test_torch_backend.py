"""The shared torch backend's code, run on CPU tensors where torch is installed.

The CUDA/Ascend machines are not here; a small stand-in plays ``torch.cuda`` for CPU
tensors (CPU ops are synchronous, so wall-clock events time them), which runs every line
that does not need a real device: operands, checksums, patterns, bit flips, the fallback
all-reduce. Skipped where torch is not installed (it is an optional dependency).
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import psutil
import pytest

from suanli.qualify.backends import PATTERNS, UnsupportedError
from suanli.qualify.runner import run_suite
from suanli.qualify.thresholds import Thresholds
from tests.qualify.conftest import TIME_SCALE

torch = pytest.importorskip("torch", reason="torch is optional; the torch backend needs it")
torch_backend = pytest.importorskip("suanli.qualify.backends.torch_backend")


class WallEvent:
    def __init__(self, enable_timing: bool = False) -> None:
        self.at = 0.0

    def record(self, stream: Any = None) -> None:
        self.at = time.perf_counter()

    def elapsed_time(self, end: WallEvent) -> float:
        return (end.at - self.at) * 1000


def stand_in() -> SimpleNamespace:
    """What the backend uses of ``torch.cuda``, for CPU tensors."""
    memory = psutil.virtual_memory()
    return SimpleNamespace(
        Event=WallEvent,
        is_available=lambda: True,
        device_count=lambda: 2,
        synchronize=lambda device=None: None,
        current_stream=lambda device=None: None,
        empty_cache=lambda: None,
        get_device_name=lambda i: "CPU stand-in",
        get_device_properties=lambda i: SimpleNamespace(total_memory=memory.total),
        mem_get_info=lambda i: (psutil.virtual_memory().available, memory.total),
    )


class CpuTorch(torch_backend.TorchBackend):  # type: ignore[misc,name-defined]
    def __init__(self) -> None:
        self.torch = torch
        self.mod = stand_in()
        self.name = "cpu-torch"
        self._stack = "CPU stand-in"
        self.devices = ("cpu-torch:0", "cpu-torch:1")
        self._ops: dict[tuple[int, str, int], Any] = {}

    def _dev(self, device: int) -> Any:
        return torch.device("cpu")


def test_matmul_precisions_and_checksums() -> None:
    backend = CpuTorch()
    run = backend.matmul([0, 1], "bf16", 64, 0.0)
    assert all(s > 0 for s in run.seconds)
    assert run.bad_results == (0, 0)
    assert backend.matmul([0], "int8", 64, 0.0).bad_results == (0,)
    with pytest.raises(UnsupportedError, match="compute capability"):
        backend.matmul([0], "fp8", 64, 0.0)
    _, check = backend._ops[(0, "bf16", 64)]
    assert check()


def test_patterns_and_bit_flips_on_int32_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_backend, "CHUNK_WORDS", 1000)
    backend = CpuTorch()
    buf = backend.allocate(0, 2500)
    for pattern in PATTERNS:
        backend.write_pattern(buf, pattern)
        assert backend.count_mismatches(buf, pattern) == 0, pattern.name
        backend.flip_bits(buf, [0, 32 * 1500 + 31, 32 * 2499 + 7])
        assert backend.count_mismatches(buf, pattern) == 3, pattern.name


def test_fallback_all_reduce_sums_into_every_device() -> None:
    run = CpuTorch().all_reduce(1 << 16, 0.0)
    assert run.wrong_elements == 0
    assert run.method.startswith("device-to-device reduce, not a collective library")


def test_the_suite_runs_on_the_torch_backend(
    thresholds: Thresholds, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)  # no device to pin for
    accelerator = thresholds.accelerator.model_copy(update={"all_reduce_bus_min_gbps": 0.1})
    sizes = thresholds.sizes.model_copy(
        update={
            "accelerator": thresholds.sizes.accelerator.model_copy(
                update={"integrity_fraction": 0.1, "matmul_n": 64}
            )
        }
    )
    small = thresholds.model_copy(update={"accelerator": accelerator, "sizes": sizes})
    report = run_suite(CpuTorch(), "standard", None, small, time_scale=TIME_SCALE)
    assert report.failures == [], report.summary()
    tests = {m.test for m in report.measurements}
    assert {"matmul_bf16", "matmul_fp16", "matmul_int8", "soak", "all_reduce"} <= tests
    host = {m.metric for m in report.measurements if m.test == "host_bandwidth"}
    assert host == {"host_to_device", "device_to_host"}
    fp8 = [m for m in report.measurements if m.test == "matmul_fp8"]
    assert {m.status for m in fp8} == {"skipped"}
