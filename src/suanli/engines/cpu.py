"""The built-in CPU engine (``suanli.engines.cpu_server``): embedding models on plain CPUs.

It serves OpenAI ``/v1/embeddings`` and ``/v1/models`` and answers ``GET /health`` with 200
once the model is loaded. It picks its own precision and context length from the model.
"""

from __future__ import annotations

import sys
from pathlib import Path

from suanli.engines.base import EngineAdapter, LaunchSpec, register
from suanli.errors import ValidationError


@register
class CpuAdapter(EngineAdapter):
    name = "cpu"
    stacks = frozenset({"CPU"})
    kinds = frozenset({"embedding"})
    visible_devices_env = "CUDA_VISIBLE_DEVICES"  # empty: never touch a GPU
    needs_devices = False
    max_lora = 0
    any_precision = True

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def validate(self, spec: LaunchSpec) -> None:
        if spec.devices:
            raise ValidationError("the cpu engine uses no accelerator", field="devices")
        super().validate(spec)

    def command(self, spec: LaunchSpec, run_dir: Path | None = None) -> list[str]:
        self.validate(spec)
        return [
            self.python,
            "-m",
            "suanli.engines.cpu_server",
            "--model",
            spec.model_path,
            "--host",
            spec.host,
            "--port",
            str(spec.port),
            "--served-model-name",
            spec.served_name,
            *spec.extra_args,
        ]
