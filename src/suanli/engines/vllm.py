"""vLLM on NVIDIA GPUs: ``vllm serve MODEL`` with the OpenAI server's flags.

Health is ``GET /health`` (200 once the engine is up); idleness comes from the Prometheus
gauges at ``/metrics``. Embedding models run the pooling runner (``--runner pooling``, vLLM
0.10.1 and later; older releases spelled it ``--task embed``). A pre-quantized checkpoint
(AWQ, GPTQ, W8A8 ...) carries its own quantization config, so it needs no flag; ``fp8``
asks vLLM to quantize the weights on load.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import httpx

from suanli.engines.base import (
    DTYPES,
    PREQUANTIZED,
    EngineAdapter,
    LaunchSpec,
    metrics_idle,
    register,
)

RUNNING_METRICS = ("vllm:num_requests_running", "vllm:num_requests_waiting")

PRECISIONS: dict[str, tuple[str, ...]] = {
    **{name: ("--dtype", dtype) for name, dtype in DTYPES.items()},
    "fp8": ("--quantization", "fp8"),
    **dict.fromkeys(PREQUANTIZED, ()),
}


def serve_argv(executable: str, spec: LaunchSpec, precision: tuple[str, ...]) -> list[str]:
    """The ``vllm serve`` command line (shared with the Ascend plugin, same CLI)."""
    argv = [
        executable,
        "serve",
        spec.model_path,
        "--host",
        spec.host,
        "--port",
        str(spec.port),
        "--served-model-name",
        spec.served_name,
        "--tensor-parallel-size",
        str(spec.tensor_parallel),
    ]
    if spec.context_length is not None:
        argv += ["--max-model-len", str(spec.context_length)]
    argv += precision
    if spec.kind == "embedding":
        argv += ["--runner", "pooling"]
    if spec.lora:
        argv += ["--enable-lora", "--max-loras", str(len(spec.lora)), "--lora-modules"]
        argv += [f"{name}={path}" for name, path in spec.lora]
    argv += spec.extra_args
    return argv


@register
class VllmAdapter(EngineAdapter):
    name = "vllm"
    stacks = frozenset({"CUDA"})
    visible_devices_env = "CUDA_VISIBLE_DEVICES"
    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = PRECISIONS

    def __init__(self, executable: str = "vllm") -> None:
        self.executable = executable  # the ``vllm`` console script; a full path if not on PATH

    def command(self, spec: LaunchSpec, run_dir: Path | None = None) -> list[str]:
        self.validate(spec)
        return serve_argv(self.executable, spec, self.precision_args(spec))

    def is_idle(self, client: httpx.Client, spec: LaunchSpec) -> bool | None:
        return metrics_idle(client, f"{self.root_url(spec)}/metrics", RUNNING_METRICS)
