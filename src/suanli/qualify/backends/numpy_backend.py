"""The CPU backend: real measurements with NumPy, on N logical devices.

``cpu_devices=N`` gives N logical devices ("cpu:0".."cpu:N-1"), each with its own buffers,
sharing the machine's cores and memory; peer comparison and all-reduce run over them.
Matmuls of several devices are interleaved repetition by repetition, so timing noise of a
shared machine falls on all of them alike.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import psutil

from suanli.errors import ValidationError
from suanli.qualify.backends.base import (
    CHECKSUM_TOLERANCE,
    CHUNK_WORDS,
    CollectiveRun,
    MatmulRun,
    Pattern,
    UnsupportedError,
    repeat_timed,
)

_DTYPES = {"fp32": np.float32, "fp64": np.float64}
Words = np.ndarray[Any, np.dtype[np.uint32]]


class NumpyBackend:
    name: str = "numpy"
    kind: Literal["cpu", "accelerator"] = "cpu"
    precisions: tuple[str, ...] = ("fp32", "fp64")

    def __init__(self, cpu_devices: int = 1) -> None:
        if cpu_devices < 1:
            raise ValidationError("cpu_devices must be at least 1", "cpu_devices")
        self.devices = tuple(f"cpu:{i}" for i in range(cpu_devices))
        self._rng = np.random.default_rng(20261125)
        self._operands: dict[tuple[int, str, int], tuple[Any, Any, Any]] = {}

    def runtime_info(self) -> str:
        return (
            f"numpy {np.__version__} on {platform.processor() or platform.machine()}, "
            f"{psutil.cpu_count(logical=True)} logical cores"
        )

    def prepare(self, test: str, seconds: float) -> None:
        if test != "soak":
            self._operands.clear()

    def sanity(self, device: int) -> float:
        ones = np.ones((64, 64), dtype=np.float32)
        return float(np.abs(ones @ ones - 64.0).max())

    def memory_total(self, device: int) -> int:
        return int(psutil.virtual_memory().total)

    def memory_free(self, device: int) -> int:
        return int(psutil.virtual_memory().available)

    def _operands_for(self, device: int, precision: str, n: int) -> tuple[Any, Any, Any]:
        key = (device, precision, n)
        if key not in self._operands:
            dtype = _DTYPES[precision]
            a = self._rng.uniform(-1, 1, (n, n)).astype(dtype)
            b = self._rng.uniform(-1, 1, (n, n)).astype(dtype)
            self._operands[key] = (a, b, np.empty((n, n), dtype=dtype))
        return self._operands[key]

    def matmul(self, devices: Sequence[int], precision: str, n: int, seconds: float) -> MatmulRun:
        if precision not in _DTYPES:
            raise UnsupportedError(f"numpy runs fp32 and fp64 matmuls, not {precision}")
        ops = [self._operands_for(d, precision, n) for d in devices]

        def one(a: Any, b: Any, c: Any) -> None:
            np.matmul(a, b, out=c)

        fns = [lambda a=a, b=b, c=c: one(a, b, c) for a, b, c in ops]
        times = repeat_timed(fns, seconds, min_reps=5)
        bad = tuple(int(not _checksum_ok(a, b, c, precision)) for a, b, c in ops)
        return MatmulRun(tuple(times), bad)

    def device_copy(self, device: int, nbytes: int, seconds: float) -> float:
        src = np.ones(nbytes // 4, dtype=np.uint32)
        dst = np.empty_like(src)
        return repeat_timed([lambda: np.copyto(dst, src)], seconds)[0]

    def host_copy(self, device: int, nbytes: int, seconds: float) -> dict[str, float]:
        src = np.ones(nbytes, dtype=np.uint8)
        dst = np.empty_like(src)
        s_ptr, d_ptr = src.ctypes.data, dst.ctypes.data

        def memcpy() -> None:
            ctypes.memmove(d_ptr, s_ptr, nbytes)

        return {"host_copy": repeat_timed([memcpy], seconds)[0]}

    def allocate(self, device: int, words: int) -> Words:
        return np.empty(words, dtype=np.uint32)

    def write_pattern(self, buf: Words, pattern: Pattern) -> None:
        if not pattern.indexed:
            buf.fill(pattern.word)
            return
        for chunk, start in enumerate(range(0, buf.size, CHUNK_WORDS)):
            part = buf[start : start + CHUNK_WORDS]
            np.bitwise_xor(
                np.arange(part.size, dtype=np.uint32), np.uint32(pattern.seed(chunk)), out=part
            )

    def count_mismatches(self, buf: Words, pattern: Pattern) -> int:
        wrong = 0
        for chunk, start in enumerate(range(0, buf.size, CHUNK_WORDS)):
            part = buf[start : start + CHUNK_WORDS]
            if pattern.indexed:
                expected = np.arange(part.size, dtype=np.uint32) ^ np.uint32(pattern.seed(chunk))
                wrong += int(np.count_nonzero(part != expected))
            else:
                wrong += int(np.count_nonzero(part != np.uint32(pattern.word)))
        return wrong

    def flip_bits(self, buf: Words, bits: Sequence[int]) -> None:
        view = buf.view(np.uint8)
        for bit in bits:
            view[bit // 8] ^= np.uint8(1 << (bit % 8))

    def all_reduce(self, nbytes: int, seconds: float) -> CollectiveRun:
        words = max(1, nbytes // 4)
        inputs = [np.full(words, d + 1, dtype=np.float32) for d in range(len(self.devices))]
        outputs = [np.empty(words, dtype=np.float32) for _ in self.devices]
        total = outputs[0]

        def reduce() -> None:
            np.copyto(total, inputs[0])
            for array in inputs[1:]:
                np.add(total, array, out=total)
            for out in outputs[1:]:
                np.copyto(out, total)

        best = repeat_timed([reduce], seconds)[0]
        expected = np.float32(len(inputs) * (len(inputs) + 1) / 2)
        wrong = sum(int(np.count_nonzero(out != expected)) for out in outputs)
        return CollectiveRun(
            best, wrong, "numpy sum of every logical device's array, copied back to each"
        )


def _checksum_ok(a: Any, b: Any, c: Any, precision: str) -> bool:
    """Row sums of C against A @ (row sums of B): O(n^2) and catches a wrong product."""
    ref = a.astype(np.float64) @ b.astype(np.float64).sum(axis=1)
    got = c.astype(np.float64).sum(axis=1)
    scale = float(np.abs(ref).max()) or 1.0
    return bool(np.abs(got - ref).max() <= CHECKSUM_TOLERANCE[precision] * scale)
