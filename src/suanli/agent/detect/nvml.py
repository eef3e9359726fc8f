"""NVIDIA GPUs through NVML (the ``pynvml`` module of the ``nvidia-ml-py`` package).

``pynvml`` is imported only when this detector runs, and a missing library or any
``NVMLError`` while opening NVML or listing devices means "not present here", so the
host detector falls through to ``nvidia-smi``. A single reading the GPU does not support
(ECC on a consumer card, power on some boards) becomes ``None`` instead.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from suanli.agent.detect.base import Device, Health

NAME = "nvml"
VENDOR = "nvidia"
_MIB = 1024 * 1024

T = TypeVar("T")


class NvmlLike(Protocol):
    """The part of ``pynvml`` this detector uses; tests pass an object of this shape."""

    @property
    def NVMLError(self) -> type[Exception]: ...  # noqa: N802
    @property
    def NVML_TEMPERATURE_GPU(self) -> int: ...  # noqa: N802
    @property
    def NVML_MEMORY_ERROR_TYPE_UNCORRECTED(self) -> int: ...  # noqa: N802
    @property
    def NVML_VOLATILE_ECC(self) -> int: ...  # noqa: N802

    def nvmlInit(self) -> None: ...  # noqa: N802
    def nvmlShutdown(self) -> None: ...  # noqa: N802
    def nvmlSystemGetDriverVersion(self) -> str | bytes: ...  # noqa: N802
    def nvmlDeviceGetCount(self) -> int: ...  # noqa: N802
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...  # noqa: N802
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...  # noqa: N802
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...  # noqa: N802
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...  # noqa: N802
    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int: ...  # noqa: N802
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...  # noqa: N802
    def nvmlDeviceGetTotalEccErrors(  # noqa: N802
        self, handle: Any, error_type: int, counter_type: int
    ) -> int: ...
    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int: ...  # noqa: N802


def load_pynvml() -> NvmlLike | None:
    """Import ``pynvml`` on demand; ``None`` when the package is not installed."""
    try:
        module: NvmlLike = importlib.import_module("pynvml")
    except ImportError:
        return None
    return module


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NvmlDetector:
    """Reads every GPU through NVML; one NVML session per :meth:`detect` call."""

    name = NAME

    def __init__(
        self, nvml: NvmlLike | None = None, loader: Callable[[], NvmlLike | None] = load_pynvml
    ) -> None:
        self._nvml = nvml
        self._loader = loader
        self._driver: str | None = None

    def driver_version(self) -> str | None:
        """The driver version seen by the last successful :meth:`detect`."""
        return self._driver

    def detect(self) -> tuple[Device, ...] | None:
        nvml = self._nvml if self._nvml is not None else self._loader()
        if nvml is None:
            return None
        try:
            nvml.nvmlInit()
        except nvml.NVMLError:
            return None
        try:
            count = nvml.nvmlDeviceGetCount()
            devices = tuple(self._read_device(nvml, i) for i in range(count))
            self._driver = self._optional(nvml, lambda: _text(nvml.nvmlSystemGetDriverVersion()))
        except nvml.NVMLError:
            return None
        finally:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()
        return devices or None

    def _read_device(self, nvml: NvmlLike, index: int) -> Device:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = _text(nvml.nvmlDeviceGetName(handle))

        def memory_mb() -> int:
            return int(nvml.nvmlDeviceGetMemoryInfo(handle).total) // _MIB

        def ecc() -> int:
            return int(
                nvml.nvmlDeviceGetTotalEccErrors(
                    handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC
                )
            )

        ecc_errors = self._optional(nvml, ecc)
        power_mw = self._optional(nvml, lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        health: Health = "critical" if ecc_errors else "ok"
        return Device(
            index=index,
            vendor=VENDOR,
            name=name,
            uuid=self._optional(nvml, lambda: _text(nvml.nvmlDeviceGetUUID(handle))),
            memory_mb=self._optional(nvml, memory_mb),
            health=health,
            temperature_c=self._optional(
                nvml, lambda: int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            ),
            utilization_pct=self._optional(
                nvml, lambda: int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            ),
            ecc_errors=ecc_errors,
            power_w=None if power_mw is None else power_mw / 1000,
        )

    @staticmethod
    def _optional(nvml: NvmlLike, read: Callable[[], T]) -> T | None:
        try:
            return read()
        except nvml.NVMLError:
            return None
