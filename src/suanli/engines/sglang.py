"""SGLang on NVIDIA GPUs: ``python -m sglang.launch_server``.

Health is ``GET /health``. The server is started with ``--enable-metrics`` so that
``/metrics`` reports running and queued requests, which tells when a draining replica is
idle. LoRA adapters are listed with ``--lora-paths NAME=PATH ...`` (that alone enables LoRA).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import httpx

from suanli.engines.base import EngineAdapter, LaunchSpec, metrics_idle, register
from suanli.engines.vllm import PRECISIONS

RUNNING_METRICS = ("sglang:num_running_reqs", "sglang:num_queue_reqs")


@register
class SglangAdapter(EngineAdapter):
    name = "sglang"
    stacks = frozenset({"CUDA"})
    visible_devices_env = "CUDA_VISIBLE_DEVICES"
    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = PRECISIONS  # same flag names

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def command(self, spec: LaunchSpec, run_dir: Path | None = None) -> list[str]:
        self.validate(spec)
        argv = [
            self.python,
            "-m",
            "sglang.launch_server",
            "--model-path",
            spec.model_path,
            "--host",
            spec.host,
            "--port",
            str(spec.port),
            "--served-model-name",
            spec.served_name,
            "--tp-size",
            str(spec.tensor_parallel),
        ]
        if spec.context_length is not None:
            argv += ["--context-length", str(spec.context_length)]
        argv += self.precision_args(spec)
        if spec.kind == "embedding":
            argv.append("--is-embedding")
        if spec.lora:
            argv += ["--lora-paths", *(f"{name}={path}" for name, path in spec.lora)]
        argv.append("--enable-metrics")
        argv += spec.extra_args
        return argv

    def is_idle(self, client: httpx.Client, spec: LaunchSpec) -> bool | None:
        return metrics_idle(client, f"{self.root_url(spec)}/metrics", RUNNING_METRICS)
