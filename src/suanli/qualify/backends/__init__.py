"""Backends run the qualification primitives: NumPy on the CPU, PyTorch on CUDA and Ascend."""

from __future__ import annotations

from typing import Literal

from suanli.errors import ValidationError
from suanli.qualify.backends.base import (
    PATTERNS,
    Backend,
    CollectiveRun,
    MatmulRun,
    Pattern,
    UnsupportedError,
)
from suanli.qualify.backends.numpy_backend import NumpyBackend

__all__ = [
    "PATTERNS",
    "Backend",
    "BackendName",
    "CollectiveRun",
    "MatmulRun",
    "NumpyBackend",
    "Pattern",
    "UnsupportedError",
    "make_backend",
]

BackendName = Literal["auto", "numpy", "cuda", "npu"]


def make_backend(name: BackendName = "auto", cpu_devices: int = 1) -> Backend:
    """The backend called ``name``. ``auto``: CUDA when torch sees a GPU, else Ascend when
    torch_npu sees an NPU, else NumPy on the CPU. ``cpu_devices`` (NumPy only) makes that
    many logical devices. An explicit ``cuda``/``npu`` that cannot start raises
    ``ValidationError`` saying why."""
    if name == "numpy":
        return NumpyBackend(cpu_devices)
    from suanli.qualify.backends.torch_backend import TorchBackend

    if name == "cuda" or name == "npu":  # narrows the literal for mypy
        return TorchBackend(name)
    if name != "auto":
        raise ValidationError(f"unknown backend {name!r}; use auto, numpy, cuda or npu", "backend")
    accelerators: tuple[Literal["cuda", "npu"], ...] = ("cuda", "npu")
    for device_type in accelerators:
        try:
            return TorchBackend(device_type)
        except ValidationError:
            continue
    return NumpyBackend(cpu_devices)
