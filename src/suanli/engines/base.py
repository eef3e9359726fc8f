"""One driver interface for every inference engine, dispatched by name.

An adapter turns a :class:`LaunchSpec` (what to serve, where, on which devices) into the
engine's exact launch: argv, environment, working directory and any config file it reads.
It also knows the engine's health check and, where the engine tells, whether it is idle.
Adapters hold no per-replica state; the :mod:`suanli.engines.supervisor` owns processes.

Built-in adapters register themselves on import; :func:`adapters` loads them all.
"""

from __future__ import annotations

import difflib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import httpx

from suanli.errors import ValidationError

EngineKind = Literal["chat", "embedding"]

# precisions whose weights carry their own quantization config: the engine reads it from the
# checkpoint, so no launch flag is needed (vLLM and SGLang detect these by themselves)
PREQUANTIZED = ("int8", "int4", "w8a8", "w8a16", "w4a16", "w4a8", "awq", "gptq")
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

_BUILTIN_MODULES = ("vllm", "vllm_ascend", "sglang", "mindie", "llamacpp", "cpu")


@dataclass(frozen=True)
class LaunchSpec:
    """What one replica serves and where. ``port`` must be set (> 0) before launch."""

    served_name: str  # the model id clients use
    model_path: str  # local path (GGUF file, HF directory) or a hub repository id
    host: str = "127.0.0.1"
    port: int = 0
    devices: tuple[int, ...] = ()  # accelerator indexes on the node; () = CPU
    tensor_parallel: int = 1
    precision: str | None = None  # "bf16", "fp8", "int8", "q4_1", ...
    context_length: int | None = None
    lora: tuple[tuple[str, str], ...] = ()  # (adapter name, path)
    extra_args: tuple[str, ...] = ()
    kind: EngineKind = "chat"


class EngineAdapter(ABC):
    """The driver of one engine. Subclasses set the class attributes and ``command``."""

    name: ClassVar[str]
    stacks: ClassVar[frozenset[str]]  # software stacks it runs on: "CUDA", "CANN", "CPU"
    kinds: ClassVar[frozenset[str]] = frozenset({"chat", "embedding"})
    visible_devices_env: ClassVar[str | None] = None  # e.g. CUDA_VISIBLE_DEVICES
    needs_devices: ClassVar[bool] = True  # False: it can run with no accelerator
    health_path: ClassVar[str] = "/health"
    max_lora: ClassVar[int | None] = None  # None: any number; 0: no LoRA
    # precision name -> launch flags; a name not in the table is refused
    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    any_precision: ClassVar[bool] = False  # True: precision is a property of the weights file

    # -- launch ---------------------------------------------------------------------------

    @abstractmethod
    def command(self, spec: LaunchSpec, run_dir: Path | None = None) -> list[str]:
        """The exact argv. Raises ValidationError for a spec this engine cannot serve."""

    def environment(
        self, spec: LaunchSpec, base: Mapping[str, str], run_dir: Path | None = None
    ) -> dict[str, str]:
        """``base`` plus what the engine needs; the devices it may see come from the spec
        (an empty list hides every accelerator of that kind)."""
        env = dict(base)
        if self.visible_devices_env:
            env[self.visible_devices_env] = ",".join(str(d) for d in spec.devices)
        return env

    def prepare(self, spec: LaunchSpec, run_dir: Path) -> None:
        """Write the config files the engine reads into ``run_dir`` (none by default)."""
        self.validate(spec)

    def working_directory(self, spec: LaunchSpec, run_dir: Path) -> Path:
        return run_dir

    # -- endpoints ------------------------------------------------------------------------

    def root_url(self, spec: LaunchSpec) -> str:
        return f"http://{url_host(spec.host)}:{spec.port}"

    def base_url(self, spec: LaunchSpec) -> str:
        """The OpenAI base URL the gateway calls."""
        return f"{self.root_url(spec)}/v1"

    def health_url(self, spec: LaunchSpec) -> str:
        return f"{self.root_url(spec)}{self.health_path}"

    def check_health(self, client: httpx.Client, spec: LaunchSpec) -> bool:
        """True when the engine answers its health check with 200."""
        try:
            return client.get(self.health_url(spec)).status_code == 200
        except httpx.HTTPError:
            return False

    def is_idle(self, client: httpx.Client, spec: LaunchSpec) -> bool | None:
        """Whether no request is running or queued; None when the engine cannot tell."""
        return None

    # -- checks ---------------------------------------------------------------------------

    def validate(self, spec: LaunchSpec) -> None:
        """Refuse, with the field at fault, what this engine cannot serve."""
        if not spec.served_name:
            raise ValidationError("served name must not be empty", field="served_name")
        if not spec.model_path:
            raise ValidationError("model path must not be empty", field="model_path")
        if not 0 < spec.port < 65536:
            raise ValidationError(f"port must be set (1-65535), not {spec.port}", field="port")
        if spec.kind not in self.kinds:
            kinds = ", ".join(sorted(self.kinds))
            raise ValidationError(
                f"{self.name} cannot serve {spec.kind} models (it serves: {kinds})", field="kind"
            )
        if spec.tensor_parallel < 1:
            raise ValidationError("tensor parallel must be at least 1", field="tensor_parallel")
        if self.needs_devices and not spec.devices:
            raise ValidationError(f"{self.name} needs at least one accelerator", field="devices")
        if spec.devices and spec.tensor_parallel > len(spec.devices):
            raise ValidationError(
                f"tensor parallel {spec.tensor_parallel} needs as many devices, "
                f"got {len(spec.devices)}",
                field="tensor_parallel",
            )
        if not spec.devices and spec.tensor_parallel > 1:
            raise ValidationError("tensor parallel needs accelerators", field="tensor_parallel")
        if len(set(spec.devices)) != len(spec.devices) or any(d < 0 for d in spec.devices):
            raise ValidationError("device indexes must be distinct and >= 0", field="devices")
        if spec.context_length is not None and spec.context_length < 1:
            raise ValidationError("context length must be positive", field="context_length")
        self._validate_lora(spec)
        self.precision_args(spec)

    def _validate_lora(self, spec: LaunchSpec) -> None:
        if not spec.lora:
            return
        if self.max_lora == 0:
            raise ValidationError(f"{self.name} cannot serve LoRA adapters", field="lora")
        if self.max_lora is not None and len(spec.lora) > self.max_lora:
            raise ValidationError(
                f"{self.name} serves at most {self.max_lora} LoRA adapter(s), got {len(spec.lora)}",
                field="lora",
            )
        names = [name for name, _ in spec.lora]
        if len(set(names)) != len(names) or not all(names) or not all(p for _, p in spec.lora):
            raise ValidationError("LoRA adapters need distinct names and a path", field="lora")
        if spec.served_name in names:
            raise ValidationError("a LoRA adapter cannot take the served name", field="lora")

    def precision_args(self, spec: LaunchSpec) -> tuple[str, ...]:
        """The flags that select the spec's precision; refuses one the engine lacks."""
        if spec.precision is None or self.any_precision:
            return ()
        flags = self.precisions.get(spec.precision.lower())
        if flags is None:
            known = ", ".join(sorted(self.precisions))
            raise ValidationError(
                f"{self.name} cannot serve precision {spec.precision!r} (known: {known})",
                field="precision",
            )
        return flags


def url_host(host: str) -> str:
    """The host part of a URL that reaches ``host``: a wildcard bind becomes loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def prometheus_total(text: str, names: Iterable[str]) -> float | None:
    """The sum of every sample of the named metrics in a Prometheus text page; None when
    none of them is there."""
    wanted = set(names)
    total: float | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:  # name{labels} value [timestamp]; label values may hold spaces
            metric, rest = line[: line.index("{")], line[line.rindex("}") + 1 :]
        else:
            metric, _, rest = line.partition(" ")
        if metric.strip() not in wanted:
            continue
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
        total = (total or 0.0) + value
    return total


def metrics_idle(client: httpx.Client, url: str, names: Iterable[str]) -> bool | None:
    """Idle when the named gauges (running and queued requests) sum to zero."""
    try:
        reply = client.get(url)
    except httpx.HTTPError:
        return None
    if reply.status_code != 200:
        return None
    total = prometheus_total(reply.text, names)
    return None if total is None else total == 0


# -- registry ---------------------------------------------------------------------------

_REGISTRY: dict[str, EngineAdapter] = {}
A = TypeVar("A", bound=type[EngineAdapter])


def register(cls: A) -> A:
    """Class decorator: make ``cls()`` the adapter known by ``cls.name``."""
    _REGISTRY[cls.name] = cls()
    return cls


def adapters() -> dict[str, EngineAdapter]:
    """Every known adapter by name."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"suanli.engines.{module}")
    return dict(sorted(_REGISTRY.items()))


def get_adapter(name: str) -> EngineAdapter:
    """The adapter called ``name``; a ValidationError naming the known ones otherwise."""
    known = adapters()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=2)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValidationError(
        f"unknown engine {name!r}{hint} (known engines: {', '.join(known)})", field="engine"
    )
