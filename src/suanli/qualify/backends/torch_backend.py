"""NVIDIA GPUs (``cuda``) and Huawei Ascend NPUs (``npu``, through torch_npu) with PyTorch.

One module for both: torch_npu mirrors ``torch.cuda`` as ``torch.npu`` (device_count,
synchronize, Event, current_stream, mem_get_info, get_device_properties, empty_cache), so
the device type only picks that module. torch is imported lazily and typed ``Any``; it is
an optional dependency. Kernel times come from device events (per device, so devices
running at once are each timed on their own); wall-clock times wait for every device.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from suanli.errors import ValidationError
from suanli.qualify.backends.base import (
    CHECKSUM_TOLERANCE,
    CHUNK_WORDS,
    MIN_REPS,
    CollectiveRun,
    MatmulRun,
    Pattern,
    UnsupportedError,
)

DeviceType = Literal["cuda", "npu"]
Op = tuple[Callable[[], None], Callable[[], bool]]  # run once, checksum of the last result


def _signed(word: int) -> int:
    """A 32-bit pattern as the int32 torch stores."""
    return word - (1 << 32) if word >= 1 << 31 else word


class TorchBackend:
    kind: Literal["cpu", "accelerator"] = "accelerator"
    precisions: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8")

    def __init__(self, device_type: DeviceType) -> None:
        try:
            self.torch: Any = importlib.import_module("torch")
            extra = importlib.import_module("torch_npu") if device_type == "npu" else None
        except Exception as exc:  # torch_npu fails in several ways without CANN
            need = "torch and torch_npu" if device_type == "npu" else "torch"
            raise ValidationError(f"backend {device_type} needs {need}: {exc}", "backend") from None
        self.mod: Any = getattr(self.torch, device_type)
        if not self.mod.is_available() or self.mod.device_count() == 0:
            raise ValidationError(f"backend {device_type}: no device is available", "backend")
        self.name: str = device_type
        self._stack = (
            f"CUDA {self.torch.version.cuda}"
            if extra is None
            else f"torch_npu {getattr(extra, '__version__', '?')}"
        )
        self.devices = tuple(f"{device_type}:{i}" for i in range(self.mod.device_count()))
        self._ops: dict[tuple[int, str, int], Op] = {}

    def _dev(self, device: int) -> Any:
        return self.torch.device(self.name, device)

    def _sync(self, devices: Sequence[int]) -> None:
        for d in devices:
            self.mod.synchronize(d)

    def runtime_info(self) -> str:
        names = sorted({self.mod.get_device_name(i) for i in range(len(self.devices))})
        return f"torch {self.torch.__version__}, {self._stack}, {', '.join(names)}"

    def prepare(self, test: str, seconds: float) -> None:
        if test != "soak":
            self._ops.clear()
        self.mod.empty_cache()

    def sanity(self, device: int) -> float:
        ones = self.torch.ones((64, 64), device=self._dev(device))
        return float((ones @ ones - 64.0).abs().max().item())

    def memory_total(self, device: int) -> int:
        return int(self.mod.get_device_properties(device).total_memory)

    def memory_free(self, device: int) -> int:
        return int(self.mod.mem_get_info(device)[0])

    def _timed(
        self, devices: Sequence[int], fns: Sequence[Callable[[], None]], seconds: float
    ) -> list[float]:
        """Seconds per call of ``fns[i]`` on ``devices[i]``, all launched round robin."""
        for fn in fns:
            fn()  # warm-up
        self._sync(devices)
        t0 = time.perf_counter()
        for fn in fns:
            fn()
        self._sync(devices)
        reps = max(MIN_REPS, math.ceil(seconds / max(time.perf_counter() - t0, 1e-6)))
        starts = [self.mod.Event(enable_timing=True) for _ in devices]
        ends = [self.mod.Event(enable_timing=True) for _ in devices]
        for d, ev in zip(devices, starts, strict=True):
            ev.record(self.mod.current_stream(d))
        for _ in range(reps):
            for fn in fns:
                fn()
        for d, ev in zip(devices, ends, strict=True):
            ev.record(self.mod.current_stream(d))
        self._sync(devices)
        return [s.elapsed_time(e) / 1000 / reps for s, e in zip(starts, ends, strict=True)]

    def _build(self, device: int, precision: str, n: int) -> tuple[Any, Any, Callable[[], Any]]:
        """Operands a, b and a function returning a @ b, for ``precision``."""
        t, dev = self.torch, self._dev(device)
        if precision in ("bf16", "fp16"):
            dtype = t.bfloat16 if precision == "bf16" else t.float16
            a, b = t.randn(n, n, device=dev, dtype=dtype), t.randn(n, n, device=dev, dtype=dtype)
            c = t.empty(n, n, device=dev, dtype=dtype)
            return a, b, lambda: t.matmul(a, b, out=c)
        if precision == "fp8":
            if self.name != "cuda" or self.mod.get_device_capability(device) < (8, 9):
                raise UnsupportedError("fp8 matmul needs a CUDA device of compute capability 8.9+")
            a = t.randn(n, n, device=dev).to(t.float8_e4m3fn)
            b = t.randn(n, n, device=dev).to(t.float8_e4m3fn).t()  # column-major, as required
            one = t.ones((), device=dev, dtype=t.float32)

            def scaled() -> Any:
                r = t._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=t.bfloat16)
                return r[0] if isinstance(r, tuple) else r  # older torch: (out, amax)

            return a, b, scaled
        if precision == "int8":
            a = t.randint(-128, 128, (n, n), device=dev, dtype=t.int8)
            b = t.randint(-128, 128, (n, n), device=dev, dtype=t.int8)
            return a, b, lambda: t._int_mm(a, b)  # int32 result
        raise UnsupportedError(f"torch backend has no {precision} matmul")

    def _op(self, device: int, precision: str, n: int) -> Op:
        out: list[Any] = [None]
        try:
            a, b, product = self._build(device, precision, n)
            out[0] = product()
            self.mod.synchronize(device)
        except (RuntimeError, NotImplementedError, AttributeError, TypeError) as exc:
            if precision in ("bf16", "fp16"):
                raise  # a device error, not a missing feature
            raise UnsupportedError(
                f"{precision} matmul unavailable on {self.devices[device]}: {exc}"
            ) from None

        def run() -> None:
            out[0] = product()

        def check() -> bool:
            """Row sums of the product against a @ (row sums of b), in fp32."""
            ref = a.float() @ b.float().sum(dim=1)
            got = out[0].float().sum(dim=1)
            err = float((got - ref).abs().max().item())
            return err <= CHECKSUM_TOLERANCE[precision] * max(float(ref.abs().max().item()), 1.0)

        return run, check

    def matmul(self, devices: Sequence[int], precision: str, n: int, seconds: float) -> MatmulRun:
        ops = []
        for d in devices:
            key = (d, precision, n)
            if key not in self._ops:
                self._ops[key] = self._op(d, precision, n)
            ops.append(self._ops[key])
        times = self._timed(devices, [run for run, _ in ops], seconds)
        return MatmulRun(tuple(times), tuple(int(not check()) for _, check in ops))

    def device_copy(self, device: int, nbytes: int, seconds: float) -> float:
        src = self.torch.ones(nbytes, dtype=self.torch.uint8, device=self._dev(device))
        dst = self.torch.empty_like(src)
        return self._timed([device], [lambda: dst.copy_(src)], seconds)[0]

    def host_copy(self, device: int, nbytes: int, seconds: float) -> dict[str, float]:
        t = self.torch
        host = t.ones(nbytes, dtype=t.uint8).pin_memory()
        dev = t.empty(nbytes, dtype=t.uint8, device=self._dev(device))
        h2d = self._timed([device], [lambda: dev.copy_(host, non_blocking=True)], seconds)[0]
        d2h = self._timed([device], [lambda: host.copy_(dev, non_blocking=True)], seconds)[0]
        return {"host_to_device": h2d, "device_to_host": d2h}

    def allocate(self, device: int, words: int) -> Any:
        return self.torch.empty(words, dtype=self.torch.int32, device=self._dev(device))

    def _chunks(self, buf: Any, pattern: Pattern) -> Iterator[tuple[Any, Any]]:
        """(part of buf, expected value or tensor) per chunk."""
        base = self.torch.arange(
            min(CHUNK_WORDS, buf.numel()), dtype=self.torch.int32, device=buf.device
        )
        for chunk, start in enumerate(range(0, buf.numel(), CHUNK_WORDS)):
            part = buf[start : start + CHUNK_WORDS]
            if pattern.indexed:
                yield (
                    part,
                    self.torch.bitwise_xor(base[: part.numel()], _signed(pattern.seed(chunk))),
                )
            else:
                yield part, _signed(pattern.word)

    def write_pattern(self, buf: Any, pattern: Pattern) -> None:
        for part, expected in self._chunks(buf, pattern):
            if pattern.indexed:
                part.copy_(expected)
            else:
                part.fill_(expected)

    def count_mismatches(self, buf: Any, pattern: Pattern) -> int:
        chunks = self._chunks(buf, pattern)
        return sum(int((part != expected).sum().item()) for part, expected in chunks)

    def flip_bits(self, buf: Any, bits: Sequence[int]) -> None:
        view = buf.view(self.torch.uint8)
        for bit in bits:
            view[bit // 8] ^= 1 << (bit % 8)

    def all_reduce(self, nbytes: int, seconds: float) -> CollectiveRun:
        t, devices = self.torch, list(range(len(self.devices)))
        inputs = [
            t.full((max(1, nbytes // 4),), float(d + 1), device=self._dev(d)) for d in devices
        ]
        outputs = [t.empty_like(x) for x in inputs]
        nccl = importlib.import_module("torch.cuda.nccl") if self.name == "cuda" else None
        if nccl is not None and nccl.is_available(inputs):
            method = "NCCL all-reduce over the node's GPUs (torch.cuda.nccl, one process)"

            def reduce() -> None:
                nccl.all_reduce(inputs, outputs)

        else:
            method = (
                f"device-to-device reduce, not a collective library: every buffer copied to "
                f"{self.devices[0]}, summed there, the sum copied back to each device"
            )

            def reduce() -> None:
                outputs[0].copy_(inputs[0])
                for x in inputs[1:]:
                    outputs[0].add_(x.to(outputs[0].device))
                for out in outputs[1:]:
                    out.copy_(outputs[0])

        reduce()
        self._sync(devices)
        t0 = time.perf_counter()
        reduce()
        self._sync(devices)
        reps = max(MIN_REPS, math.ceil(seconds / max(time.perf_counter() - t0, 1e-6)))
        t0 = time.perf_counter()
        for _ in range(reps):
            reduce()
        self._sync(devices)
        elapsed = (time.perf_counter() - t0) / reps
        expected = len(devices) * (len(devices) + 1) / 2
        wrong = sum(int((out != expected).sum().item()) for out in outputs)
        return CollectiveRun(elapsed, wrong, method)
