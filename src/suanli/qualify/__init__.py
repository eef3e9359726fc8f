"""Node qualification: an acceptance suite per node, in levels like NVIDIA DCGM diagnostics.

``quick`` (seconds): devices present, runtime sane, memory size as the catalog says.
``standard`` (~2 min) and ``long`` (~15 min) add matmul throughput per precision, device
memory bandwidth, memory integrity, host bandwidth, all-reduce bus bandwidth, a soak that
flags throttling, and a comparison of each device with its identical peers. Thresholds are
configuration (``data/thresholds.yaml``). Pure: the backends measure, ``runner`` judges;
nothing here touches the store or the network.
"""

from suanli.qualify.backends import Backend, make_backend
from suanli.qualify.model import Level, Measurement, QualificationReport
from suanli.qualify.runner import run_suite
from suanli.qualify.thresholds import Thresholds, load_thresholds

__all__ = [
    "Backend",
    "Level",
    "Measurement",
    "QualificationReport",
    "Thresholds",
    "load_thresholds",
    "make_backend",
    "run_suite",
]
