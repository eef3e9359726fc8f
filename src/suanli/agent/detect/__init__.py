"""Hardware detection for the node agent.

:func:`detect_host` describes the machine: NVML first, then ``nvidia-smi``, then
``npu-smi info``, else CPU only.
"""

from suanli.agent.detect.base import Detector, Device, HostInfo, Runner, run_command
from suanli.agent.detect.host import DEFAULT_ORDER, DETECTORS, detect_host, make_detector
from suanli.agent.detect.npu_smi import NpuSmiDetector, parse_npu_smi_info
from suanli.agent.detect.nvidia_smi import NvidiaSmiDetector, parse_query_csv
from suanli.agent.detect.nvml import NvmlDetector, NvmlLike

__all__ = [
    "DEFAULT_ORDER",
    "DETECTORS",
    "Detector",
    "Device",
    "HostInfo",
    "NpuSmiDetector",
    "NvidiaSmiDetector",
    "NvmlDetector",
    "NvmlLike",
    "Runner",
    "detect_host",
    "make_detector",
    "parse_npu_smi_info",
    "parse_query_csv",
    "run_command",
]
