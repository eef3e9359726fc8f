"""What a backend offers the runner: timed primitives over its devices, nothing judged.

Backends return seconds per operation (over repetitions), counts of wrong results
and mismatched words; the runner turns them into rates and holds them to thresholds.
Devices are addressed by index into ``Backend.devices``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "CHUNK_WORDS",
    "MIN_REPS",
    "PATTERNS",
    "Backend",
    "CollectiveRun",
    "MatmulRun",
    "Pattern",
    "UnsupportedError",
    "repeat_timed",
]

MIN_REPS = 3  # every timing repeats at least this often
CHUNK_WORDS = 1 << 24  # memory patterns are written and checked 64 MiB at a time
# relative error of a product's row sums; low precisions round every element of the result
CHECKSUM_TOLERANCE = {
    "fp64": 1e-9, "fp32": 1e-3, "bf16": 5e-2, "fp16": 5e-2, "fp8": 5e-2, "int8": 1e-3,
}  # fmt: skip


class UnsupportedError(Exception):
    """The backend cannot run this (a precision the hardware or library lacks)."""


@dataclass(frozen=True)
class Pattern:
    """A 32-bit memory test pattern. Constant patterns write ``word`` everywhere; indexed
    ones write, in chunk ``c``, word ``i`` (index within the chunk) xor ``seed(c)``, so each
    chunk holds different values and an address fault shows as mismatches."""

    name: str
    word: int
    indexed: bool = False

    def seed(self, chunk: int) -> int:
        return (self.word + chunk * 0x9E3779B1) & 0xFFFFFFFF


PATTERNS: tuple[Pattern, ...] = (
    Pattern("zeros", 0x00000000),
    Pattern("ones", 0xFFFFFFFF),
    Pattern("checker 0xAAAAAAAA", 0xAAAAAAAA),
    Pattern("checker 0x55555555", 0x55555555),
    Pattern("address", 0x00000000, indexed=True),
    Pattern("inverted address", 0xFFFFFFFF, indexed=True),
)


@dataclass(frozen=True)
class MatmulRun:
    seconds: tuple[float, ...]  # per device asked for: seconds per n x n matmul
    bad_results: tuple[int, ...]  # per device: results that failed the checksum


@dataclass(frozen=True)
class CollectiveRun:
    seconds: float  # seconds per all-reduce of the whole buffer
    wrong_elements: int  # elements of the results that differ from the expected sum
    method: str  # how it was done, in words


class Backend(Protocol):
    name: str  # "numpy", "cuda", "npu" (a fault wrapper adds its faults)
    kind: Literal["cpu", "accelerator"]
    devices: tuple[str, ...]  # "cpu:0", "cuda:0", ...
    precisions: tuple[str, ...]  # matmul precisions to try, best first

    def runtime_info(self) -> str: ...

    def prepare(self, test: str, seconds: float) -> None:
        """Called before each test with its planned duration; frees cached memory."""

    def sanity(self, device: int) -> float:
        """Max abs error of ones(64x64) @ ones(64x64) against 64 (exact in fp32)."""

    def memory_total(self, device: int) -> int: ...

    def memory_free(self, device: int) -> int: ...

    def matmul(self, devices: Sequence[int], precision: str, n: int, seconds: float) -> MatmulRun:
        """n x n matmuls on all ``devices`` at once for about ``seconds``; raises
        ``UnsupportedError`` for a precision this backend or device cannot do."""

    def device_copy(self, device: int, nbytes: int, seconds: float) -> float:
        """Seconds to copy ``nbytes`` between two buffers on the device."""

    def host_copy(self, device: int, nbytes: int, seconds: float) -> dict[str, float]:
        """Seconds per transfer of ``nbytes``, by direction."""

    def allocate(self, device: int, words: int) -> Any: ...

    def write_pattern(self, buf: Any, pattern: Pattern) -> None: ...

    def count_mismatches(self, buf: Any, pattern: Pattern) -> int: ...

    def flip_bits(self, buf: Any, bits: Sequence[int]) -> None:
        """Invert the given bits (bit index from the start of the buffer)."""

    def all_reduce(self, nbytes: int, seconds: float) -> CollectiveRun:
        """Sum an ``nbytes`` buffer held by every device into every device."""


def repeat_timed(
    fns: Sequence[Callable[[], None]], seconds: float, min_reps: int = MIN_REPS
) -> list[float]:
    """Run ``fns`` until ``seconds`` passed and each ran ``min_reps`` times, in a new random
    order each round; the fastest seconds per call of each. On a CPU shared with other
    processes interference only ever slows a repetition down, so the fastest is the
    estimate of what the hardware does; the shuffled rounds keep a periodic disturbance
    from always hitting the same function."""
    times: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    shuffle = random.Random(len(fns)).shuffle
    start = time.perf_counter()
    while len(times[0]) < min_reps or time.perf_counter() - start < seconds:
        shuffle(order)
        for i in order:
            t0 = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - t0)
    return [min(t) for t in times]
