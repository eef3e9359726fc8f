"""The OpenAI-compatible gateway served for real, driven by the official OpenAI client.

Behind it are fake replicas (``fake_upstream``) that can fail, die mid-stream or be slow.
Every test checks the usage records too: exactly one per authenticated request to an
inference endpoint, none for a request without a valid key.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import openai
import orjson
import pytest
from sqlalchemy import select

from suanli.domain.actor import SYSTEM
from suanli.domain.specs import LimitsPatch
from suanli.services import credentials
from suanli.store.tables import TenantRow
from tests.gateway.conftest import Served, wait_until
from tests.gateway.fake_upstream import CACHED_TOKENS, PROMPT_TOKENS, refused_url

CHAT = [{"role": "user", "content": "Say hello."}]
SQLITE = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


def post(gw: Served, path: str, body: Any, key: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key or gw.world.key}"} if key != "" else {}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        return client.post(path, content=content, headers=headers, **kw)


def assert_error(
    response: httpx.Response,
    status: int,
    code: str | None,
    param: str | None = None,
    type_: str = "invalid_request_error",
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert sorted(error) == ["code", "message", "param", "type"]
    assert (error["type"], error["param"], error["code"]) == (type_, param, code)
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


def sse_events(raw: bytes) -> list[bytes]:
    """The ``data:`` payloads of a server-sent event stream, in order."""
    return [e[len(b"data: ") :] for e in raw.split(b"\n\n") if e.startswith(b"data: ")]


# --- what a client gets when all goes well -------------------------------------------------


def test_chat(gw: Served) -> None:
    raw = gw.client().chat.completions.with_raw_response.create(
        model="m", messages=CHAT, max_tokens=50
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "tok0 tok1 tok2 "
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        PROMPT_TOKENS,
        3,
    )
    rid = raw.headers["x-request-id"]
    (got,) = gw.fakes[0].received
    assert got.path == "/v1/chat/completions"
    assert got.request_id == rid  # the engine runs it under the gateway's id
    assert got.body == {"model": "m", "messages": CHAT, "max_tokens": 50}
    (row,) = gw.records(1)
    with gw.world.sessions() as session:
        tenant_id = session.scalar(select(TenantRow.id).where(TenantRow.name == "acme"))
    assert (row.request_id, row.tenant_id, row.credential_id) == (rid, tenant_id, gw.world.key_id)
    assert (row.endpoint, row.model, row.replica_id, row.node, row.stream) == (
        "chat",
        "m",
        gw.world.replica,
        "external",
        False,
    )
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (
        PROMPT_TOKENS,
        3,
        CACHED_TOKENS,
    )
    assert (row.status, row.outcome, row.error_code, row.attempts) == (200, "ok", "", 1)
    assert row.ttft_us is not None
    assert 0 < row.ttft_us <= row.latency_us
    assert row.started_at <= row.finished_at
    assert row.gateway == gw.gateway.journal.name


@SQLITE
@pytest.mark.parametrize(
    ("include_usage", "upstream_usage"),
    [(False, True), (True, True), (True, False), (False, False)],
    ids=["plain", "usage", "usage-synthesized", "plain-upstream-without-usage"],
)
def test_chat_stream_usage_chunk(gw: Served, include_usage: bool, upstream_usage: bool) -> None:
    """The client sees a usage chunk exactly when it asked for one, whatever the engine does.

    The gateway always asks the engine for usage (it meters on it) and strips it when the
    client did not ask; for an engine that never sends it (llama-cpp-python) it makes one."""
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = gw.client().chat.completions.create(
        model="m",
        messages=CHAT,
        stream=True,
        extra_body={"fake": {"usage": upstream_usage, "chunks": 4}},
        **options,  # type: ignore[arg-type]
    )
    with stream:
        chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 tok3 "
    with_usage = [c for c in chunks if c.usage is not None]
    (got,) = gw.fakes[0].received
    assert got.body["stream_options"] == {"include_usage": True}
    (row,) = gw.records(1)
    assert (row.stream, row.status, row.outcome) == (True, 200, "ok")
    if not include_usage:
        assert with_usage == []
    else:
        assert len(with_usage) == 1
        last = chunks[-1]
        assert last is with_usage[0]
        assert last.choices == []
        assert last.usage is not None
        assert last.usage.completion_tokens == 4
        assert last.usage.total_tokens == last.usage.prompt_tokens + 4
        assert last.usage.prompt_tokens == (PROMPT_TOKENS if upstream_usage else row.prompt_tokens)
    if upstream_usage:
        assert (row.prompt_tokens, row.completion_tokens, row.error_code) == (PROMPT_TOKENS, 4, "")
    else:  # metered on the gateway's estimate, and marked so
        assert row.completion_tokens == 4
        assert 0 < row.prompt_tokens < PROMPT_TOKENS
        assert row.error_code == "usage_estimated"


@SQLITE
def test_stream_bytes_end_with_done(gw: Served) -> None:
    with (
        httpx.Client(base_url=gw.url, timeout=10) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "m", "messages": CHAT, "stream": True},
            headers={"authorization": f"Bearer {gw.world.key}"},
        ) as response,
    ):
        raw = response.read()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"]
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    assert all(b'"usage"' not in e for e in events)
    (row,) = gw.records(1)
    assert row.request_id == response.headers["x-request-id"]


@SQLITE
def test_completions(gw: Served) -> None:
    client = gw.client()
    raw = client.completions.with_raw_response.create(model="m", prompt="Once upon", max_tokens=5)
    completion = raw.parse()
    assert completion.choices[0].text == "tok0 tok1 tok2 "
    stream = client.completions.create(
        model="m", prompt=["Once", "upon"], stream=True, stream_options={"include_usage": True}
    )
    with stream:
        chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "tok0 tok1 tok2 "
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert [r.path for r in gw.fakes[0].received] == ["/v1/completions"] * 2
    rows = gw.records(2)
    assert [(r.endpoint, r.stream, r.completion_tokens, r.outcome) for r in rows] == [
        ("completions", False, 3, "ok"),
        ("completions", True, 3, "ok"),
    ]
    assert rows[0].request_id == raw.headers["x-request-id"]


@SQLITE
def test_embeddings(gw: Served) -> None:
    (replica,) = gw.world.deploy("e", [gw.fakes[1].url], model="all-minilm-l6-v2")
    client = gw.client()
    wait_until(lambda: "e" in gw.gateway.registry.entries, what="the registry sees e")
    raw = client.embeddings.with_raw_response.create(model="e", input=["one", "two"])
    result = raw.parse()
    assert [d.embedding for d in result.data] == [[0.25, -0.5, 0.75]] * 2
    assert result.usage.prompt_tokens == PROMPT_TOKENS
    assert gw.fakes[1].received[0].path == "/v1/embeddings"
    (row,) = gw.records(1)
    assert (row.endpoint, row.model, row.replica_id, row.status, row.outcome) == (
        "embeddings",
        "e",
        replica,
        200,
        "ok",
    )
    assert (row.prompt_tokens, row.completion_tokens, row.error_code) == (PROMPT_TOKENS, 0, "")
    assert row.request_id == raw.headers["x-request-id"]


@SQLITE
def test_models(gw: Served) -> None:
    world = gw.world
    world.add_tenant("other")
    world.deploy("private", [gw.fakes[1].url], tenant="other")
    world.deploy("mine", [gw.fakes[1].url], tenant="acme")
    wait_until(lambda: "mine" in gw.gateway.registry.entries)
    client = gw.client()
    raw = client.models.with_raw_response.list()
    assert raw.headers["x-request-id"]
    assert [m.id for m in raw.parse().data] == ["m", "mine"]  # not another tenant's
    model = client.models.retrieve("m")
    assert (model.id, model.object, model.owned_by) == ("m", "model", "suanli")
    assert abs(model.created - time.time()) < 600
    with pytest.raises(openai.NotFoundError) as exc:
        client.models.retrieve("private")
    assert exc.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        gw.client("sk-wrong").models.list()
    _, scoped = world.issue_key(models=["mine"])
    assert [m.id for m in gw.client(scoped).models.list().data] == ["mine"]
    with pytest.raises(openai.NotFoundError):
        gw.client(scoped).models.retrieve("m")
    with httpx.Client(base_url=gw.url) as h:
        assert_error(
            h.post("/v1/models", headers={"authorization": f"Bearer {world.key}"}),
            405,
            "method_not_allowed",
        )
    assert world.usage_count() == 0
    gw.gateway.journal.flush()
    assert gw.gateway.journal.written == 0  # listing models is not metered


# --- refusals: status, OpenAI error shape, metering -----------------------------------------


Case = tuple[str, Callable[[Served], httpx.Response], int, str | None, str | None, bool]


def _case_requests() -> list[Case]:
    chat = "/v1/chat/completions"
    long_prompt = [{"role": "user", "content": "x" * 40_000}]  # ~10000 tokens > 8192
    return [
        # (name, request, status, code, param, metered)
        ("malformed-json", lambda g: post(g, chat, b'{"model": "m",'), 400, "invalid_json", None, True),
        ("not-an-object", lambda g: post(g, chat, [1, 2]), 400, "invalid_json", None, True),
        ("missing-model", lambda g: post(g, chat, {"messages": CHAT}), 400, "missing_required_parameter", "model", True),
        ("empty-messages", lambda g: post(g, chat, {"model": "m", "messages": []}), 400, "invalid_type", "messages", True),
        ("bad-role", lambda g: post(g, chat, {"model": "m", "messages": [{"role": "robot", "content": "x"}]}), 400, "invalid_value", "messages[0].role", True),
        ("negative-max-tokens", lambda g: post(g, chat, {"model": "m", "messages": CHAT, "max_tokens": -1}), 400, "invalid_value", "max_tokens", True),
        ("string-max-tokens", lambda g: post(g, chat, {"model": "m", "messages": CHAT, "max_tokens": "9"}), 400, "invalid_type", "max_tokens", True),
        ("max-tokens-over-context", lambda g: post(g, chat, {"model": "m", "messages": CHAT, "max_tokens": 9000}), 400, "context_length_exceeded", "max_tokens", True),
        ("oversize-prompt", lambda g: post(g, chat, {"model": "m", "messages": long_prompt}), 400, "context_length_exceeded", "messages", True),
        ("stream-options-without-stream", lambda g: post(g, chat, {"model": "m", "messages": CHAT, "stream_options": {"include_usage": True}}), 400, "invalid_value", "stream_options", True),
        ("missing-prompt", lambda g: post(g, "/v1/completions", {"model": "m"}), 400, "invalid_type", "prompt", True),
        ("empty-input", lambda g: post(g, "/v1/embeddings", {"model": "m", "input": []}), 400, "invalid_value", "input", True),
        ("body-too-large", lambda g: post(g, chat, b"[" + b"1," * (9 * 1024 * 1024) + b"1]"), 413, "body_too_large", None, True),
        ("unknown-model", lambda g: post(g, chat, {"model": "nope", "messages": CHAT}), 404, "model_not_found", "model", True),
        ("missing-key", lambda g: post(g, chat, {"model": "m", "messages": CHAT}, key=""), 401, "missing_api_key", None, False),
        ("wrong-key", lambda g: post(g, chat, {"model": "m", "messages": CHAT}, key="sk-nope"), 401, "invalid_api_key", None, False),
        ("wrong-method", lambda g: httpx.get(g.url + chat), 405, "method_not_allowed", None, False),
        ("unknown-path", lambda g: httpx.post(g.url + "/v1/chat/complete"), 404, "unknown_url", None, False),
    ]  # fmt: skip


CASES = _case_requests()


def test_refusals(gw: Served) -> None:
    """Each refusal has its status and OpenAI error body; each authenticated one is metered
    once (as an error, no replica, no tokens), the others not at all."""
    metered = 0
    for name, request, status, code, param, is_metered in CASES:
        response = request(gw)
        assert_error(response, status, code, param)
        metered += is_metered
        rows = gw.records(metered)
        if is_metered:
            row = rows[-1]
            assert row.request_id == response.headers["x-request-id"], name
            assert (row.status, row.outcome, row.error_code) == (status, "error", code), name
            assert (row.replica_id, row.attempts, row.completion_tokens) == (None, 0, 0), name
            assert row.prompt_tokens == 0, name
    assert gw.fakes[0].received == []  # nothing reached a replica


@SQLITE
def test_refusals_through_the_client(gw: Served) -> None:
    client = gw.client()
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="nope", messages=CHAT)
    assert (not_found.value.code, not_found.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="m", messages=CHAT, max_tokens=-5)
    assert (bad.value.param, bad.value.type) == ("max_tokens", "invalid_request_error")
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model="m", prompt="y" * 40_000)
    assert (too_long.value.code, too_long.value.param) == ("context_length_exceeded", "prompt")
    with pytest.raises(openai.AuthenticationError) as wrong:
        gw.client("sk-not-a-key").chat.completions.create(model="m", messages=CHAT)
    assert wrong.value.code == "invalid_api_key"
    assert wrong.value.response.headers["x-request-id"]
    assert len(gw.records(3)) == 3


@SQLITE
def test_revoked_key(gw: Served) -> None:
    client = gw.client()
    client.chat.completions.create(model="m", messages=CHAT)
    with gw.world.sessions.begin() as session:
        credentials.revoke(session, SYSTEM, gw.world.key_id)
    revoked_at = time.monotonic()

    def refused() -> bool:
        try:
            client.chat.completions.create(model="m", messages=CHAT)
        except openai.AuthenticationError:
            return True
        return False

    wait_until(refused, 3, "the revocation to take effect")
    assert time.monotonic() - revoked_at < 1.5  # key_cache_s is 0.2 s; slack for a busy host
    accepted = len(gw.fakes[0].received)
    assert len(gw.records(accepted)) == accepted  # the 401 is not metered


@SQLITE
def test_key_scoped_to_other_models(gw: Served) -> None:
    _, scoped = gw.world.issue_key(models=["other"])
    with pytest.raises(openai.PermissionDeniedError) as exc:
        gw.client(scoped).chat.completions.create(model="m", messages=CHAT)
    assert exc.value.status_code == 403
    assert (exc.value.type, exc.value.param, exc.value.code) == (
        "permission_error",
        "model",
        "model_not_allowed",
    )
    (row,) = gw.records(1)
    assert (row.status, row.error_code) == (403, "model_not_allowed")
    assert gw.fakes[0].received == []


def test_key_rpm_limit(gw: Served) -> None:
    key_id, key = gw.world.issue_key(rpm_limit=2)
    client = gw.client(key)
    ok = client.chat.completions.with_raw_response.create(model="m", messages=CHAT)
    assert ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "1"
    client.chat.completions.create(model="m", messages=CHAT)
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="m", messages=CHAT)
    response = exc.value.response
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-limit-requests"] == "2"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    assert response.headers["x-request-id"]
    assert exc.value.code == "rate_limit_exceeded"
    assert "API key" in exc.value.message
    assert len(gw.fakes[0].received) == 2
    rows = gw.records(3)
    assert [(r.status, r.outcome, r.credential_id) for r in rows] == [
        (200, "ok", key_id),
        (200, "ok", key_id),
        (429, "error", key_id),
    ]
    # a new limit reaches the gateway within key_cache_s
    with gw.world.sessions.begin() as session:
        credentials.set_key_limits(session, SYSTEM, "acme", key_id, LimitsPatch(rpm_limit=None))
    time.sleep(0.3)
    client.chat.completions.create(model="m", messages=CHAT)


@SQLITE
def test_tenant_limits(gw: Served) -> None:
    gw.world.add_tenant("small", rpm_limit=1, tpm_limit=1000)
    _, key = gw.world.issue_key("small")
    client = gw.client(key)
    with pytest.raises(openai.RateLimitError) as never:  # reserves more than a minute's tokens
        client.chat.completions.create(model="m", messages=CHAT, max_tokens=2000)
    assert "retry-after" not in never.value.response.headers
    assert "tenant" in never.value.message
    client.chat.completions.create(model="m", messages=CHAT, max_tokens=10)
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="m", messages=CHAT, max_tokens=10)
    assert "tenant" in exc.value.message
    assert exc.value.response.headers["x-ratelimit-limit-requests"] == "1"
    assert int(exc.value.response.headers["retry-after"]) >= 1
    rows = gw.records(3)
    assert [r.status for r in rows] == [429, 200, 429]


@SQLITE
def test_no_ready_replica(gw: Served) -> None:
    gw.world.deploy("cold", None, engine="llama.cpp")  # no node to place it on
    wait_until(lambda: "cold" in gw.gateway.registry.entries)
    with pytest.raises(openai.InternalServerError) as exc:
        gw.client().chat.completions.create(model="cold", messages=CHAT)
    assert exc.value.status_code == 503
    assert exc.value.code == "model_not_ready"
    assert exc.value.response.headers["retry-after"] == "5"
    (row,) = gw.records(1)
    assert (row.status, row.outcome, row.error_code, row.model) == (
        503,
        "error",
        "model_not_ready",
        "cold",
    )


def test_a_replica_ready_since_the_last_reload_serves_at_once(
    serve: Callable[..., Served],
) -> None:
    """The replica table reloads rarely here; a model deployed after the last reload is
    not refused as unknown or not ready: the gateway reloads before it refuses."""
    gw = serve(refresh_s=3600.0)
    gw.world.deploy("late", [gw.fakes[1].url])
    assert "late" not in gw.gateway.registry.entries
    reply = gw.client().chat.completions.create(model="late", messages=CHAT)
    assert reply.choices
    with pytest.raises(openai.NotFoundError):  # still unknown after a reload: 404
        gw.client().chat.completions.create(model="nowhere", messages=CHAT)


@SQLITE
def test_no_ready_replica_costs_no_rate_limit(gw: Served) -> None:
    """Clients retry a 503 (it says retry-after): the refusals must not use up the key's
    token budget, which each would reserve for a whole context."""
    gw.world.deploy("cold", None, engine="llama.cpp")
    _, key = gw.world.issue_key(tpm_limit=9000)  # one context's worth (8192) fits
    wait_until(lambda: "cold" in gw.gateway.registry.entries)
    client = gw.client(key)
    for _ in range(3):
        with pytest.raises(openai.InternalServerError) as exc:
            client.chat.completions.create(model="cold", messages=CHAT)
        assert exc.value.status_code == 503
    client.chat.completions.create(model="m", messages=CHAT)
    assert [r.status for r in gw.records(4)] == [503, 503, 503, 200]


@SQLITE
def test_upstream_client_error_is_passed_on(gw: Served) -> None:
    gw.fakes[0].behave(mode="error", status=400)
    with pytest.raises(openai.BadRequestError) as exc:
        gw.client().chat.completions.create(model="m", messages=CHAT)
    assert exc.value.message.endswith("a fails")  # the engine's own error body
    assert len(gw.fakes[0].received) == 1  # a 4xx is the request's fault: not retried
    (row,) = gw.records(1)
    assert (row.status, row.outcome, row.error_code, row.attempts) == (
        400,
        "error",
        "upstream_400",
        1,
    )


# --- failover -----------------------------------------------------------------------------


@SQLITE
@pytest.mark.parametrize(
    ("failure", "stream"),
    [
        ("500", False),
        ("500", True),
        ("refused", False),
        ("refused", True),
        ("closed", False),
        ("closed", True),
        ("dies", False),  # mid-body: nothing has reached the client yet
    ],
)
def test_failover(gw: Served, failure: str, stream: bool) -> None:
    a, b = gw.fakes
    bad = refused_url() if failure == "refused" else a.url
    if failure == "500":
        a.behave(mode="error", status=500)
    elif failure == "closed":
        a.behave(mode="close")
    elif failure == "dies":
        a.behave(mode="die")
    _, good = gw.world.deploy("f", [bad, b.url], routing="round_robin")
    wait_until(lambda: "f" in gw.gateway.registry.entries)
    client = gw.client()
    if stream:
        with client.chat.completions.create(model="f", messages=CHAT, stream=True) as chunks:
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        completion = client.chat.completions.create(model="f", messages=CHAT)
        text = completion.choices[0].message.content or ""
    assert text == "tok0 tok1 tok2 "
    assert len(b.received) == 1
    assert len(a.received) == (0 if failure == "refused" else 1)
    (row,) = gw.records(1)
    assert (row.status, row.outcome, row.attempts, row.replica_id) == (200, "ok", 2, good)
    assert row.completion_tokens == 3


def test_every_replica_fails(gw: Served) -> None:
    a, b = gw.fakes
    a.behave(mode="error", status=503)
    b.behave(mode="close")
    gw.world.deploy("f", [a.url, b.url, refused_url()], routing="round_robin")
    wait_until(lambda: "f" in gw.gateway.registry.entries)
    with pytest.raises(openai.InternalServerError) as exc:
        gw.client().chat.completions.create(model="f", messages=CHAT)
    assert exc.value.status_code == 502
    assert (exc.value.type, exc.value.code) == ("server_error", "upstream_unavailable")
    assert (len(a.received), len(b.received)) == (1, 1)
    (row,) = gw.records(1)
    assert (row.status, row.outcome, row.error_code, row.attempts) == (
        502,
        "error",
        "upstream_unavailable",
        3,
    )


def test_dies_mid_stream_is_not_retried(gw: Served) -> None:
    """The client gets what the replica sent, then an error event (the OpenAI client raises
    on it) instead of [DONE]; the record counts the chunks that went out."""
    a, b = gw.fakes
    a.behave(mode="die", chunks=2)
    b.behave(mode="die", chunks=2)
    replicas = gw.world.deploy("f", [a.url, b.url], routing="round_robin")
    wait_until(lambda: "f" in gw.gateway.registry.entries)
    with (
        httpx.Client(base_url=gw.url, timeout=10) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "f", "messages": CHAT, "stream": True},
            headers={"authorization": f"Bearer {gw.world.key}"},
        ) as response,
    ):
        got = response.read()
    events = [orjson.loads(e) for e in sse_events(got)]
    texts = [e["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert texts == ["", "tok0 ", "tok1 "]
    assert events[-1]["error"]["code"] == "upstream_interrupted"
    assert b"[DONE]" not in got
    assert (len(a.received), len(b.received)) == (1, 0)  # the first bytes had gone out
    seen = []
    with (
        pytest.raises(openai.APIError, match="failed mid-answer"),
        gw.client().chat.completions.create(model="f", messages=CHAT, stream=True) as stream,
    ):
        seen.extend(c.choices[0].delta.content for c in stream)
    assert seen == ["", "tok0 ", "tok1 "]
    assert (len(a.received), len(b.received)) == (1, 1)
    rows = gw.records(2)
    assert [r.replica_id for r in rows] == replicas
    for row in rows:
        assert (row.status, row.outcome, row.attempts) == (200, "interrupted", 1)
        assert row.completion_tokens == 2
        assert row.error_code == "upstream_closed"


# --- a client that goes away ----------------------------------------------------------------


def test_client_disconnect_mid_stream_cancels_upstream(gw: Served) -> None:
    a = gw.fakes[0]
    a.behave(chunks=200, delay=0.02)
    stream = gw.client().chat.completions.create(model="m", messages=CHAT, stream=True)
    seen = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen.append(chunk.choices[0].delta.content)
        if len(seen) == 3:
            break
    stream.close()
    closed_at = time.monotonic()
    wait_until(lambda: a.received[0].ended_at is not None, 3, "the upstream request to end")
    (got,) = a.received
    assert got.disconnected
    assert not got.finished
    assert got.ended_at is not None
    assert got.ended_at - closed_at < 1.0
    assert 3 <= got.chunks_sent < 200
    (row,) = gw.records(1)
    assert (row.status, row.outcome, row.error_code) == (499, "interrupted", "client_closed")
    assert 3 <= row.completion_tokens <= got.chunks_sent
    assert row.stream


@SQLITE
def test_client_timeout_cancels_upstream(gw: Served) -> None:
    a = gw.fakes[0]
    a.behave(delay=5)
    client = openai.OpenAI(
        base_url=gw.url + "/v1", api_key=gw.world.key, max_retries=0, timeout=0.3
    )
    with client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=CHAT)
    wait_until(lambda: a.received and a.received[0].ended_at is not None, 3)
    assert a.received[0].disconnected
    (row,) = gw.records(1)
    assert (row.status, row.outcome, row.completion_tokens) == (499, "interrupted", 0)
    assert row.prompt_tokens > 0  # the prompt had reached the engine


# --- routing -------------------------------------------------------------------------------


@SQLITE
def test_round_robin_uses_both_replicas(gw: Served) -> None:
    a, b = gw.fakes
    gw.world.deploy("r", [a.url, b.url], routing="round_robin")
    wait_until(lambda: "r" in gw.gateway.registry.entries)
    client = gw.client()
    for _ in range(6):
        client.chat.completions.create(model="r", messages=CHAT)
    assert (len(a.received), len(b.received)) == (3, 3)
    rows = gw.records(6)
    assert Counter(r.replica_id for r in rows).most_common() != [(rows[0].replica_id, 6)]


@SQLITE
def test_prefix_cache_keeps_a_prompt_on_one_replica(gw: Served) -> None:
    a, b = gw.fakes
    gw.world.deploy("p", [a.url, b.url], routing="prefix_cache")
    wait_until(lambda: "p" in gw.gateway.registry.entries)
    client = gw.client()
    system = {"role": "system", "content": "You are a careful assistant. " * 40}
    other = {"role": "system", "content": "Answer in French, briefly please. " * 40}
    for i in range(5):
        client.chat.completions.create(
            model="p", messages=[system, {"role": "user", "content": f"question {i}"}]
        )
    first = "a" if a.received else "b"
    assert (len(a.received), len(b.received)) in ((5, 0), (0, 5))
    for i in range(3):  # a new prefix goes where there is cache room, and then stays
        client.chat.completions.create(
            model="p", messages=[other, {"role": "user", "content": f"question {i}"}]
        )
    assert (len(a.received), len(b.received)) == ((5, 3) if first == "a" else (3, 5))
    gw.records(8)


# --- concurrency ---------------------------------------------------------------------------


@SQLITE
def test_concurrent_streams_each_metered_once(gw: Served) -> None:
    a, b = gw.fakes
    gw.world.deploy("c", [a.url, b.url], routing="least_outstanding")
    wait_until(lambda: "c" in gw.gateway.registry.entries)
    client = gw.client()
    ids: list[str] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            raw = client.chat.completions.with_raw_response.create(
                model="c",
                messages=CHAT,
                stream=True,
                extra_body={"fake": {"chunks": 5, "delay": 0.01}},
            )
            with raw.parse() as stream:
                assert sum(1 for c in stream if c.choices and c.choices[0].delta.content) == 5
            ids.append(raw.headers["x-request-id"])
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    rows = gw.records(12)
    assert sorted(r.request_id for r in rows) == sorted(ids)
    assert {r.completion_tokens for r in rows} == {5}
    assert len(a.received) > 0
    assert len(b.received) > 0
    entry = gw.gateway.registry.entries["c"]
    assert [h.outstanding for h in entry.handles] == [0, 0]
