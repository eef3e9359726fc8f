"""llama.cpp through llama-cpp-python's OpenAI server: ``python -m llama_cpp.server``.

It serves one GGUF file; its precision (q4_1, q8_0, f16 ...) is the file's own. On GPUs every
layer is offloaded (``--n_gpu_layers -1``) and split over the visible devices; with no device
it runs on CPU. Boolean settings take a value (``--embedding true``). One LoRA file at most,
applied to the model (it is not a separately named model). The server has no health route
and listens only once the model is loaded, so ``GET /v1/models`` answering 200 is health.
"""

from __future__ import annotations

import sys
from pathlib import Path

from suanli.engines.base import EngineAdapter, LaunchSpec, register


@register
class LlamaCppAdapter(EngineAdapter):
    name = "llama.cpp"
    stacks = frozenset({"CUDA", "CPU"})
    visible_devices_env = "CUDA_VISIBLE_DEVICES"
    needs_devices = False
    health_path = "/v1/models"
    max_lora = 1
    any_precision = True

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def command(self, spec: LaunchSpec, run_dir: Path | None = None) -> list[str]:
        self.validate(spec)
        argv = [
            self.python,
            "-m",
            "llama_cpp.server",
            "--model",
            spec.model_path,
            "--host",
            spec.host,
            "--port",
            str(spec.port),
            "--model_alias",
            spec.served_name,
        ]
        if spec.context_length is not None:
            argv += ["--n_ctx", str(spec.context_length)]
        if spec.devices:
            argv += ["--n_gpu_layers", "-1"]
        if spec.kind == "embedding":
            argv += ["--embedding", "true"]
        for _, path in spec.lora:
            argv += ["--lora_path", path]
        argv += spec.extra_args
        return argv
