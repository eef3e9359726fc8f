"""Engine adapters: the exact launch of each engine, its config file, its health check."""

from __future__ import annotations

import json
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from suanli.engines import LaunchSpec, adapters, free_port, get_adapter
from suanli.engines.base import prometheus_total, url_host
from suanli.engines.mindie import CONFIG_NAME, MindieAdapter
from suanli.engines.vllm import VllmAdapter
from suanli.errors import ValidationError

PY = sys.executable
TP2 = LaunchSpec(
    served_name="qwen2-72b",
    model_path="/models/qwen2-72b",
    host="0.0.0.0",
    port=8001,
    devices=(2, 3),
    tensor_parallel=2,
    precision="bf16",
    context_length=32768,
    lora=(("sql", "/adapters/sql"), ("chat-zh", "/adapters/zh")),
    extra_args=("--gpu-memory-utilization", "0.85"),
)
EMBED = LaunchSpec("bge-m3", "BAAI/bge-m3", port=9000, devices=(0,), kind="embedding")


def test_the_registry_knows_every_engine_and_its_stacks() -> None:
    stacks = {name: set(adapter.stacks) for name, adapter in adapters().items()}
    assert stacks == {
        "vllm": {"CUDA"},
        "vllm-ascend": {"CANN"},
        "sglang": {"CUDA"},
        "mindie": {"CANN"},
        "llama.cpp": {"CUDA", "CPU"},
        "cpu": {"CPU"},
    }
    assert get_adapter("vllm-ascend").name == "vllm-ascend"


def test_an_unknown_engine_names_the_known_ones() -> None:
    with pytest.raises(ValidationError) as err:
        get_adapter("vlm")
    assert err.value.field == "engine"
    assert "did you mean 'vllm'" in err.value.message
    assert "known engines: cpu, llama.cpp, mindie, sglang, vllm, vllm-ascend" in err.value.message


def test_vllm_with_tensor_parallel_lora_and_precision() -> None:
    vllm = get_adapter("vllm")
    assert vllm.command(TP2) == [
        "vllm", "serve", "/models/qwen2-72b",
        "--host", "0.0.0.0", "--port", "8001",
        "--served-model-name", "qwen2-72b",
        "--tensor-parallel-size", "2",
        "--max-model-len", "32768",
        "--dtype", "bfloat16",
        "--enable-lora", "--max-loras", "2",
        "--lora-modules", "sql=/adapters/sql", "chat-zh=/adapters/zh",
        "--gpu-memory-utilization", "0.85",
    ]  # fmt: skip
    env = vllm.environment(TP2, {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert env == {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "2,3"}
    assert vllm.base_url(TP2) == "http://127.0.0.1:8001/v1"  # a wildcard bind is reached locally
    assert vllm.health_url(TP2) == "http://127.0.0.1:8001/health"


def test_vllm_embedding_fp8_and_a_checkpoint_that_is_already_quantized() -> None:
    assert VllmAdapter("/opt/venv/bin/vllm").command(EMBED) == [
        "/opt/venv/bin/vllm", "serve", "BAAI/bge-m3",
        "--host", "127.0.0.1", "--port", "9000",
        "--served-model-name", "bge-m3", "--tensor-parallel-size", "1",
        "--runner", "pooling",
    ]  # fmt: skip
    fp8 = get_adapter("vllm").command(replace(EMBED, kind="chat", precision="FP8"))
    assert fp8[-2:] == ["--quantization", "fp8"]
    awq = get_adapter("vllm").command(replace(EMBED, kind="chat", precision="awq"))
    assert "--quantization" not in awq
    assert "--dtype" not in awq


def test_vllm_ascend_is_the_same_cli_on_npus() -> None:
    spec = replace(TP2, precision="w8a8", lora=(), extra_args=(), devices=(4, 5, 6, 7))
    assert get_adapter("vllm-ascend").command(spec) == [
        "vllm", "serve", "/models/qwen2-72b",
        "--host", "0.0.0.0", "--port", "8001",
        "--served-model-name", "qwen2-72b",
        "--tensor-parallel-size", "2",
        "--max-model-len", "32768",
        "--quantization", "ascend",
    ]  # fmt: skip
    env = get_adapter("vllm-ascend").environment(spec, {})
    assert env == {"ASCEND_RT_VISIBLE_DEVICES": "4,5,6,7"}
    with pytest.raises(ValidationError, match="precision 'fp8'") as err:
        get_adapter("vllm-ascend").command(replace(spec, precision="fp8"))
    assert err.value.field == "precision"


def test_sglang() -> None:
    assert get_adapter("sglang").command(replace(TP2, precision="fp8", extra_args=())) == [
        PY, "-m", "sglang.launch_server",
        "--model-path", "/models/qwen2-72b",
        "--host", "0.0.0.0", "--port", "8001",
        "--served-model-name", "qwen2-72b",
        "--tp-size", "2",
        "--context-length", "32768",
        "--quantization", "fp8",
        "--lora-paths", "sql=/adapters/sql", "chat-zh=/adapters/zh",
        "--enable-metrics",
    ]  # fmt: skip
    assert get_adapter("sglang").command(EMBED) == [
        PY, "-m", "sglang.launch_server",
        "--model-path", "BAAI/bge-m3",
        "--host", "127.0.0.1", "--port", "9000",
        "--served-model-name", "bge-m3", "--tp-size", "1",
        "--is-embedding", "--enable-metrics",
    ]  # fmt: skip


def test_llama_cpp_on_gpu_and_on_cpu() -> None:
    llama = get_adapter("llama.cpp")
    gguf = LaunchSpec(
        "llama3-8b", "/models/llama3-8b.Q4_1.gguf", port=8080, devices=(1,),
        precision="q4_1", context_length=4096, lora=(("tone", "/adapters/tone.gguf"),),
    )  # fmt: skip
    assert llama.command(gguf) == [
        PY, "-m", "llama_cpp.server",
        "--model", "/models/llama3-8b.Q4_1.gguf",
        "--host", "127.0.0.1", "--port", "8080",
        "--model_alias", "llama3-8b",
        "--n_ctx", "4096",
        "--n_gpu_layers", "-1",
        "--lora_path", "/adapters/tone.gguf",
    ]  # fmt: skip
    assert llama.environment(gguf, {})["CUDA_VISIBLE_DEVICES"] == "1"
    on_cpu = LaunchSpec("e5", "/models/e5.gguf", port=8081, kind="embedding")
    assert llama.command(on_cpu) == [
        PY, "-m", "llama_cpp.server", "--model", "/models/e5.gguf",
        "--host", "127.0.0.1", "--port", "8081", "--model_alias", "e5",
        "--embedding", "true",
    ]  # fmt: skip
    assert llama.environment(on_cpu, {"CUDA_VISIBLE_DEVICES": "0"}) == {
        "CUDA_VISIBLE_DEVICES": ""  # no GPU for a CPU replica
    }
    assert llama.health_url(on_cpu) == "http://127.0.0.1:8081/v1/models"
    with pytest.raises(ValidationError, match="at most 1 LoRA"):
        llama.command(replace(gguf, lora=TP2.lora))


def test_the_cpu_engine_serves_embeddings_only() -> None:
    spec = LaunchSpec("bge-small", "/models/bge-small", port=7000, kind="embedding")
    assert get_adapter("cpu").command(spec) == [
        PY, "-m", "suanli.engines.cpu_server",
        "--model", "/models/bge-small",
        "--host", "127.0.0.1", "--port", "7000",
        "--served-model-name", "bge-small",
    ]  # fmt: skip
    with pytest.raises(ValidationError, match="cannot serve chat models") as err:
        get_adapter("cpu").command(replace(spec, kind="chat"))
    assert err.value.field == "kind"
    with pytest.raises(ValidationError, match="no accelerator"):
        get_adapter("cpu").command(replace(spec, devices=(0,)))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"port": 0}, "port"),
        ({"devices": ()}, "devices"),
        ({"devices": (0,), "tensor_parallel": 2}, "tensor_parallel"),
        ({"devices": (0, 0)}, "devices"),
        ({"context_length": 0}, "context_length"),
        ({"precision": "q4_1"}, "precision"),
        ({"lora": (("a", "/x"), ("a", "/y"))}, "lora"),
        ({"lora": (("m", "/x"),)}, "lora"),  # an adapter named like the model
        ({"served_name": ""}, "served_name"),
    ],
)
def test_specs_an_accelerator_engine_refuses(change: dict[str, object], field: str) -> None:
    spec = replace(LaunchSpec("m", "/models/m", port=8000, devices=(0,)), **change)  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as err:
        get_adapter("vllm").command(spec)
    assert err.value.field == field


def test_mindie_writes_its_config_and_points_the_daemon_at_it(tmp_path: Path) -> None:
    mindie = MindieAdapter(install_path="/usr/local/Ascend/mindie/latest/mindie-service")
    spec = replace(TP2, precision="w8a8", extra_args=(), devices=(4, 5, 6, 7), port=1025)
    mindie.prepare(spec, tmp_path)
    path = tmp_path / CONFIG_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    config = json.loads(path.read_text())
    server = config["ServerConfig"]
    assert (server["ipAddress"], server["port"]) == ("0.0.0.0", 1025)
    assert (server["managementIpAddress"], server["managementPort"]) == ("0.0.0.0", 1025)
    assert server["allowAllZeroIpListening"] is True
    assert server["httpsEnabled"] is False
    backend = config["BackendConfig"]
    assert backend["npuDeviceIds"] == [[0, 1]]  # logical: the first two visible NPUs
    deploy = backend["ModelDeployConfig"]
    assert (deploy["maxSeqLen"], deploy["maxInputTokenLen"]) == (32768, 32767)
    model = deploy["ModelConfig"][0]
    assert model["modelName"] == "qwen2-72b"
    assert model["modelWeightPath"] == "/models/qwen2-72b"
    assert model["worldSize"] == 2
    assert deploy["maxLoras"] == 2
    assert deploy["LoraModules"] == [
        {"name": "sql", "path": "/adapters/sql", "baseModelName": "qwen2-72b"},
        {"name": "chat-zh", "path": "/adapters/zh", "baseModelName": "qwen2-72b"},
    ]
    assert backend["ScheduleConfig"]["maxPrefillTokens"] >= deploy["maxInputTokenLen"]

    assert mindie.command(spec, tmp_path) == [
        "/usr/local/Ascend/mindie/latest/mindie-service/bin/mindieservice_daemon"
    ]
    env = mindie.environment(spec, {"PATH": "/bin"}, tmp_path)
    assert env == {
        "PATH": "/bin",
        "ASCEND_RT_VISIBLE_DEVICES": "4,5,6,7",
        "MIES_CONFIG_JSON_PATH": str(path),
        "MIES_INSTALL_PATH": "/usr/local/Ascend/mindie/latest/mindie-service",
    }
    assert mindie.working_directory(spec, tmp_path) == Path(mindie.install_path or "")
    assert mindie.health_url(spec) == "http://127.0.0.1:1025/v2/health/ready"
    assert mindie.base_url(spec) == "http://127.0.0.1:1025/v1"


def test_mindie_defaults_and_refusals(tmp_path: Path) -> None:
    spec = LaunchSpec("qwen2-7b", "/weights/qwen2-7b", host="10.0.0.5", port=1025, devices=(0,))
    config = get_adapter("mindie").config(spec)  # type: ignore[attr-defined]
    assert config["ServerConfig"]["allowAllZeroIpListening"] is False
    deploy = config["BackendConfig"]["ModelDeployConfig"]
    assert (deploy["maxSeqLen"], deploy["maxInputTokenLen"]) == (2560, 2048)
    assert "LoraModules" not in deploy
    assert get_adapter("mindie").command(spec) == ["mindieservice_daemon"]
    for change, field in [
        ({"served_name": "qwen/7b"}, "served_name"),
        ({"model_path": "Qwen/Qwen2-7B"}, "model_path"),
        ({"extra_args": ("--x",)}, "extra_args"),
        ({"kind": "embedding"}, "kind"),
        ({"precision": "fp8"}, "precision"),
        ({"port": 80}, "port"),
    ]:
        with pytest.raises(ValidationError) as err:
            get_adapter("mindie").prepare(replace(spec, **change), tmp_path)  # type: ignore[arg-type]
        assert err.value.field == field


def test_urls_and_prometheus_parsing() -> None:
    assert url_host("::") == "[::1]"
    assert url_host("fd00::5") == "[fd00::5]"
    assert url_host("10.1.2.3") == "10.1.2.3"
    page = (
        "# HELP vllm:num_requests_running Number of requests running.\n"
        'vllm:num_requests_running{model_name="a b"} 2.0\n'
        'vllm:num_requests_running{model_name="c"} 1.0 1700000000\n'
        "vllm:num_requests_waiting 0\n"
        "vllm:num_requests_running_total 9\n"
    )
    assert prometheus_total(page, ["vllm:num_requests_running"]) == 3.0
    assert prometheus_total(page, ["vllm:num_requests_waiting"]) == 0.0
    assert prometheus_total(page, ["sglang:num_running_reqs"]) is None


# -- against a local HTTP server speaking the engines' health and metrics APIs -------------

ROUTES: dict[str, tuple[int, str]] = {}


class _Engine(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = ROUTES.get(self.path, (404, "not found"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def engine_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Engine)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    ROUTES.clear()


def test_health_checks_against_a_live_server(engine_port: int) -> None:
    with httpx.Client(timeout=2) as client:
        spec = LaunchSpec("m", "/models/m.gguf", port=engine_port)
        llama = get_adapter("llama.cpp")
        assert llama.check_health(client, spec) is False  # 404: not loaded yet
        ROUTES["/v1/models"] = (200, '{"object": "list", "data": [{"id": "m"}]}')
        assert llama.check_health(client, spec) is True

        vllm = get_adapter("vllm")
        gpu = replace(spec, devices=(0,))
        ROUTES["/health"] = (503, "")
        assert vllm.check_health(client, gpu) is False
        ROUTES["/health"] = (200, "")
        assert vllm.check_health(client, gpu) is True
        assert vllm.is_idle(client, gpu) is None  # no metrics page: cannot tell
        ROUTES["/metrics"] = (200, "vllm:num_requests_running 0.0\nvllm:num_requests_waiting 2\n")
        assert vllm.is_idle(client, gpu) is False
        ROUTES["/metrics"] = (200, "vllm:num_requests_running 0.0\nvllm:num_requests_waiting 0\n")
        assert vllm.is_idle(client, gpu) is True

        ROUTES["/v2/health/ready"] = (200, "")
        mindie = replace(spec, model_path="/weights/m", devices=(0,), port=engine_port)
        assert get_adapter("mindie").check_health(client, mindie) is True

        nobody = replace(gpu, port=free_port())
        assert vllm.check_health(client, nobody) is False  # connection refused
        assert vllm.is_idle(client, nobody) is None
