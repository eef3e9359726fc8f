"""Fault injection: a Backend wrapper that makes healthy hardware look sick, to prove the
suite catches each fault and names it (tests, and ``suanli qualify --inject``).

- ``SlowDevice``: one device's matmul and memory-copy throughput x (1 - fraction), as a
  device with a degraded clock or memory would measure;
- ``BitFlips``: after every pattern is written to a device's buffer, ``count`` bits in
  distinct words are inverted in the real buffer, as weak cells would;
- ``Decay``: during the soak, throughput falls linearly to (1 - fraction) over ``over_s``
  seconds (default: the soak's planned length), as a throttling device would.

Slow and decay scale the timings the real backend measured; the work itself is done.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from suanli.errors import ValidationError
from suanli.qualify.backends.base import Backend, CollectiveRun, MatmulRun, Pattern

__all__ = ["BitFlips", "Decay", "Fault", "FaultyBackend", "SlowDevice", "parse_fault"]


@dataclass(frozen=True)
class SlowDevice:
    device: int
    fraction: float = 0.3

    def __str__(self) -> str:
        return f"slow:{self.device}:{self.fraction:g}"


@dataclass(frozen=True)
class BitFlips:
    device: int
    count: int = 8
    seed: int = 0

    def __str__(self) -> str:
        return f"bitflip:{self.device}:{self.count}"


@dataclass(frozen=True)
class Decay:
    fraction: float = 0.5
    over_s: float | None = None
    device: int | None = None  # None: every device

    def __str__(self) -> str:
        return f"decay:{self.fraction:g}" + ("" if self.device is None else f":{self.device}")


Fault = SlowDevice | BitFlips | Decay
FORMS = "slow:DEVICE[:FRACTION], bitflip:DEVICE[:COUNT], decay[:FRACTION[:DEVICE]]"


def parse_fault(text: str) -> Fault:
    """``slow:1:0.3``, ``bitflip:0:16``, ``decay:0.5`` (devices by index)."""
    kind, *args = text.strip().split(":")
    try:
        if kind == "slow" and 1 <= len(args) <= 2:
            return SlowDevice(int(args[0]), *(float(a) for a in args[1:]))
        if kind == "bitflip" and 1 <= len(args) <= 2:
            return BitFlips(int(args[0]), *(int(a) for a in args[1:]))
        if kind == "decay" and len(args) <= 2:
            fraction = float(args[0]) if args else 0.5
            return Decay(fraction, None, int(args[1]) if len(args) > 1 else None)
    except ValueError:
        pass
    raise ValidationError(f"bad fault {text!r}; use {FORMS}", "inject")


class FaultyBackend:
    """``inner`` with ``faults``; its name says which faults were injected."""

    def __init__(
        self,
        inner: Backend,
        faults: Sequence[Fault],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for fault in faults:
            device = fault.device
            if device is not None and not 0 <= device < len(inner.devices):
                raise ValidationError(
                    f"fault {fault} names device {device}; this backend has "
                    f"{len(inner.devices)} ({', '.join(inner.devices)})",
                    "inject",
                )
            if isinstance(fault, SlowDevice | Decay) and not 0 < fault.fraction < 1:
                raise ValidationError(f"fault {fault}: fraction must be in (0, 1)", "inject")
            if isinstance(fault, BitFlips) and fault.count < 1:
                raise ValidationError(f"fault {fault}: count must be at least 1", "inject")
        self.inner = inner
        self.faults = tuple(faults)
        self.name = f"{inner.name} (injected: {', '.join(str(f) for f in faults)})"
        self.kind = inner.kind
        self.devices = inner.devices
        self.precisions = inner.precisions
        self._clock = clock
        self._soak: tuple[float, float] | None = None  # (start, planned seconds)
        self._owner: dict[int, tuple[int, int]] = {}  # id(buffer) -> (device, words)
        self._writes = 0

    def _factor(self, device: int) -> float:
        factor = 1.0
        for f in self.faults:
            if isinstance(f, SlowDevice) and f.device == device:
                factor *= 1 - f.fraction
            elif isinstance(f, Decay) and f.device in (None, device) and self._soak:
                start, planned = self._soak
                span = f.over_s or planned
                done = min(1.0, (self._clock() - start) / span) if span > 0 else 1.0
                factor *= 1 - f.fraction * done
        return factor

    def runtime_info(self) -> str:
        return f"{self.inner.runtime_info()}; FAULTS INJECTED: {', '.join(map(str, self.faults))}"

    def prepare(self, test: str, seconds: float) -> None:
        self.inner.prepare(test, seconds)
        self._soak = (self._clock(), seconds) if test == "soak" else None

    def sanity(self, device: int) -> float:
        return self.inner.sanity(device)

    def memory_total(self, device: int) -> int:
        return self.inner.memory_total(device)

    def memory_free(self, device: int) -> int:
        return self.inner.memory_free(device)

    def matmul(self, devices: Sequence[int], precision: str, n: int, seconds: float) -> MatmulRun:
        factors = [self._factor(d) for d in devices]
        run = self.inner.matmul(devices, precision, n, seconds)
        slowed = tuple(t / f for t, f in zip(run.seconds, factors, strict=True))
        return MatmulRun(slowed, run.bad_results)

    def device_copy(self, device: int, nbytes: int, seconds: float) -> float:
        return self.inner.device_copy(device, nbytes, seconds) / self._factor(device)

    def host_copy(self, device: int, nbytes: int, seconds: float) -> dict[str, float]:
        return self.inner.host_copy(device, nbytes, seconds)

    def allocate(self, device: int, words: int) -> Any:
        buf = self.inner.allocate(device, words)
        self._owner[id(buf)] = (device, words)
        return buf

    def write_pattern(self, buf: Any, pattern: Pattern) -> None:
        self.inner.write_pattern(buf, pattern)
        device, words = self._owner.get(id(buf), (-1, 0))
        for f in self.faults:
            if isinstance(f, BitFlips) and f.device == device:
                self._writes += 1
                rng = random.Random(f"{f.seed}:{self._writes}")
                chosen = rng.sample(range(words), min(f.count, words))
                self.inner.flip_bits(buf, [w * 32 + rng.randrange(32) for w in chosen])

    def count_mismatches(self, buf: Any, pattern: Pattern) -> int:
        return self.inner.count_mismatches(buf, pattern)

    def flip_bits(self, buf: Any, bits: Sequence[int]) -> None:
        self.inner.flip_bits(buf, bits)

    def all_reduce(self, nbytes: int, seconds: float) -> CollectiveRun:
        return self.inner.all_reduce(nbytes, seconds)
