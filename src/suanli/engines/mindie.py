"""MindIE Service on Huawei Ascend NPUs: ``mindieservice_daemon`` reading a JSON config.

The daemon takes no arguments: it reads the file named by ``MIES_CONFIG_JSON_PATH`` (else
``$MIES_INSTALL_PATH/conf/config.json``). We write one config per replica into its run
directory, readable by its owner and group only (the daemon refuses looser modes).

Addressing: the business API (OpenAI ``/v1/chat/completions``, ``/v1/models``) and the
internal API (health, ``/metrics``) share one address and port here, the "single IP, single
port" layout, with HTTPS off (the node's own network boundary protects it). Readiness is
``GET /v2/health/ready`` on that internal API: 200 when ready, 503 when busy or starting.

Device ids in ``npuDeviceIds`` are logical: counted from 0 in ``ASCEND_RT_VISIBLE_DEVICES``
order, which we set from the spec's devices. dtype and quantization come from the weights
directory (its ``config.json``), so precision needs no setting; Ascend has no FP8.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from suanli.engines.base import DTYPES, PREQUANTIZED, EngineAdapter, LaunchSpec, register
from suanli.errors import ValidationError

CONFIG_NAME = "mindie-config.json"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,254}[A-Za-z0-9])?$")
_DEFAULT_SEQ_LEN = 2560  # the service's own defaults when no context length is asked
_DEFAULT_INPUT_LEN = 2048


@register
class MindieAdapter(EngineAdapter):
    name = "mindie"
    stacks = frozenset({"CANN"})
    kinds = frozenset({"chat"})
    visible_devices_env = "ASCEND_RT_VISIBLE_DEVICES"
    health_path = "/v2/health/ready"
    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = {
        **dict.fromkeys(DTYPES, ()),
        **dict.fromkeys(PREQUANTIZED, ()),
    }

    def __init__(self, install_path: str | None = None) -> None:
        """``install_path``: the mindie-service directory; None: the daemon is on PATH
        (the service's ``set_env.sh`` was sourced) and relative paths resolve there."""
        self.install_path = install_path

    def validate(self, spec: LaunchSpec) -> None:
        super().validate(spec)
        if not _MODEL_NAME.match(spec.served_name):
            raise ValidationError(
                "MindIE model names are letters, digits, '-', '.' and '_' (at most 256), "
                f"not starting or ending with a symbol: {spec.served_name!r}",
                field="served_name",
            )
        if not os.path.isabs(spec.model_path):
            raise ValidationError(
                "MindIE loads weights from a local directory: give its absolute path",
                field="model_path",
            )
        if spec.extra_args:
            raise ValidationError(
                "MindIE takes its settings from its config file, not from arguments",
                field="extra_args",
            )
        if spec.port < 1024:
            raise ValidationError("MindIE listens on ports 1024-65535", field="port")

    def command(self, spec: LaunchSpec, run_dir: Path | None = None) -> list[str]:
        self.validate(spec)
        if self.install_path:
            return [str(Path(self.install_path) / "bin" / "mindieservice_daemon")]
        return ["mindieservice_daemon"]

    def environment(
        self, spec: LaunchSpec, base: Mapping[str, str], run_dir: Path | None = None
    ) -> dict[str, str]:
        if run_dir is None:
            raise ValueError("MindIE reads its config from the run directory: pass run_dir")
        env = super().environment(spec, base, run_dir)
        env["MIES_CONFIG_JSON_PATH"] = str(run_dir / CONFIG_NAME)
        if self.install_path:
            env["MIES_INSTALL_PATH"] = self.install_path
        return env

    def working_directory(self, spec: LaunchSpec, run_dir: Path) -> Path:
        return Path(self.install_path) if self.install_path else run_dir

    def prepare(self, spec: LaunchSpec, run_dir: Path) -> None:
        text = json.dumps(self.config(spec), indent=2) + "\n"
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / CONFIG_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        path.chmod(0o640)  # also when the file was already there

    def config(self, spec: LaunchSpec) -> dict[str, Any]:
        """The whole config.json for this replica."""
        self.validate(spec)
        world = spec.tensor_parallel
        if spec.context_length is None:
            seq_len, input_len = _DEFAULT_SEQ_LEN, _DEFAULT_INPUT_LEN
        else:
            seq_len, input_len = spec.context_length, max(1, spec.context_length - 1)
        deploy: dict[str, Any] = {
            "maxSeqLen": seq_len,
            "maxInputTokenLen": input_len,
            "truncation": False,
            "ModelConfig": [
                {
                    "modelInstanceType": "Standard",
                    "modelName": spec.served_name,
                    "modelWeightPath": spec.model_path,
                    "worldSize": world,
                    "cpuMemSize": 0,
                    "npuMemSize": -1,
                    "backendType": "atb",
                    "trustRemoteCode": False,
                }
            ],
        }
        if spec.lora:
            deploy["maxLoras"] = len(spec.lora)
            deploy["LoraModules"] = [
                {"name": name, "path": path, "baseModelName": spec.served_name}
                for name, path in spec.lora
            ]
        return {
            "Version": "1.0.0",
            "ServerConfig": {
                "ipAddress": spec.host,
                "managementIpAddress": spec.host,
                "port": spec.port,
                "managementPort": spec.port,
                "metricsPort": spec.port,
                "allowAllZeroIpListening": spec.host in ("0.0.0.0", "::"),
                "maxLinkNum": 1000,
                "httpsEnabled": False,
                "fullTextEnabled": False,
                "inferMode": "standard",
                "interCommTLSEnabled": False,
                "openAiSupport": "vllm",
                "tokenTimeout": 600,
                "e2eTimeout": 600,
                "distDPServerEnabled": False,
            },
            "BackendConfig": {
                "backendName": "mindieservice_llm_engine",
                "modelInstanceNumber": 1,
                "npuDeviceIds": [list(range(world))],
                "tokenizerProcessNumber": 8,
                "multiNodesInferEnabled": False,
                "multiNodesInferPort": 1120,
                "interNodeTLSEnabled": False,
                "ModelDeployConfig": deploy,
                "ScheduleConfig": {
                    "templateType": "Standard",
                    "templateName": "Standard_LLM",
                    "cacheBlockSize": 128,
                    "maxPrefillBatchSize": 50,
                    "maxPrefillTokens": max(8192, input_len),
                    "prefillTimeMsPerReq": 150,
                    "prefillPolicyType": 0,
                    "decodeTimeMsPerReq": 50,
                    "decodePolicyType": 0,
                    "maxBatchSize": 200,
                    "maxIterTimes": seq_len,  # output is still cut at maxSeqLen - input
                    "maxPreemptCount": 0,
                    "supportSelectBatch": False,
                    "maxQueueDelayMicroseconds": 5000,
                },
            },
        }
