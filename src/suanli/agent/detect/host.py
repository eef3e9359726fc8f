"""Put the detectors together: the first one that finds devices describes the host.

Detectors are registered by name in :data:`DETECTORS` and tried in :data:`DEFAULT_ORDER`
(NVML, then ``nvidia-smi``, then ``npu-smi``); when none finds a device the host is
reported as CPU-only with detector ``"cpu"``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from suanli.agent.detect.base import Detector, Device, HostInfo, Runner, run_command
from suanli.agent.detect.cpu import read_cpu_info
from suanli.agent.detect.npu_smi import NpuSmiDetector
from suanli.agent.detect.nvidia_smi import NvidiaSmiDetector
from suanli.agent.detect.nvml import NvmlDetector, NvmlLike
from suanli.errors import ValidationError

CPU_DETECTOR: Final = "cpu"

DetectorFactory = Callable[[Runner, NvmlLike | None], Detector]

DETECTORS: Final[dict[str, DetectorFactory]] = {
    "nvml": lambda _runner, nvml: NvmlDetector(nvml),
    "nvidia-smi": lambda runner, _nvml: NvidiaSmiDetector(runner),
    "npu-smi": lambda runner, _nvml: NpuSmiDetector(runner),
}
DEFAULT_ORDER: Final = ("nvml", "nvidia-smi", "npu-smi")


def make_detector(
    name: str, runner: Runner = run_command, nvml: NvmlLike | None = None
) -> Detector:
    """The detector registered as ``name``."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(DETECTORS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValidationError(
            f"unknown detector {name!r} (known: {', '.join(DETECTORS)}){hint}", field="detector"
        ) from None
    return factory(runner, nvml)


def detect_host(
    runner: Runner = run_command,
    nvml: NvmlLike | None = None,
    proc_root: Path = Path("/"),
    *,
    order: Sequence[str] = DEFAULT_ORDER,
) -> HostInfo:
    """Describe this machine.

    ``runner`` runs the vendor tools, ``nvml`` replaces the lazily imported ``pynvml``
    and ``proc_root`` is where ``proc/`` is read from. Malformed tool output raises
    :class:`suanli.errors.ValidationError`; a missing tool just moves on to the next.
    """
    detectors = [make_detector(name, runner, nvml) for name in order]
    cpu = read_cpu_info(proc_root)
    detector_name = CPU_DETECTOR
    devices: tuple[Device, ...] = ()
    driver: str | None = None
    for detector in detectors:
        found = detector.detect()
        if found:
            detector_name, devices, driver = detector.name, found, detector.driver_version()
            break
    return HostInfo(
        hostname=cpu.hostname,
        cpu_model=cpu.model,
        cpu_cores=cpu.cores,
        memory_mb=cpu.memory_mb,
        detector=detector_name,
        devices=devices,
        driver_version=driver,
    )
