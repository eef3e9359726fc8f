"""A fake OpenAI-compatible model server for the gateway tests, on 127.0.0.1.

It serves ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` the way vLLM
does (a stream ends with a ``finish_reason`` chunk, then the usage chunk when the request
asked for it with ``stream_options.include_usage``, then ``data: [DONE]``), and can misbehave
on demand. What it does is a ``Behaviour``: each server has a default one
(``FakeUpstream.behave``), and a request overrides fields of it with a ``"fake"`` object in
its body (the OpenAI client's ``extra_body``), which the gateway passes through untouched:

    ok        answer normally (``chunks`` content chunks when streaming)
    error     answer ``status`` with an OpenAI error body
    close     read the request, then close the connection without answering
    die       stream ``chunks`` content chunks, then drop the connection (no [DONE]); not
              streaming: send half the body, then drop the connection

``usage=False`` never sends usage in a stream, like llama-cpp-python's server; ``delay`` waits
before each stream chunk, or before a whole answer (a slow replica a client can walk away
from). Every request is recorded (``FakeUpstream.received``): its body, its ``x-request-id``,
how many content chunks went out, and whether the client (the gateway) closed the connection
before the answer was out.

Several servers share one event loop in a background thread (``UpstreamLoop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson
from aiohttp import web

PROMPT_TOKENS = 17  # the usage every fake answer reports
CACHED_TOKENS = 4
EMBEDDING = [0.25, -0.5, 0.75]


class Dropped(asyncio.CancelledError):
    """Raised by a handler that dropped its own connection (``close``, ``die``)."""


@dataclass(frozen=True)
class Behaviour:
    mode: str = "ok"  # ok | error | close | die
    status: int = 500  # for mode=error
    chunks: int = 3  # content chunks of a stream (and the completion tokens reported)
    usage: bool = True  # send the usage chunk when asked (llama-cpp-python never does)
    delay: float = 0.0  # seconds before each stream chunk
    prompt_tokens: int = PROMPT_TOKENS  # what the usage says


@dataclass
class Received:
    path: str
    body: dict[str, Any]
    request_id: str | None
    chunks_sent: int = 0
    finished: bool = False  # the whole answer went out
    disconnected: bool = False  # the peer closed the connection before the answer was out
    ended_at: float | None = None  # monotonic


@dataclass
class FakeUpstream:
    name: str
    port: int = 0
    default: Behaviour = field(default_factory=Behaviour)
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The OpenAI base URL a deployment's ``endpoints`` takes."""
        return f"http://127.0.0.1:{self.port}/v1"

    def behave(self, **changes: Any) -> None:
        self.default = replace(Behaviour(), **changes)

    def reset(self) -> None:
        self.default = Behaviour()
        self.received.clear()

    # --- serving --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        got = Received(request.path, body, request.headers.get("x-request-id"))
        self.received.append(got)
        how = self._behaviour(body.get("fake"))
        try:
            return await self._answer(request, body, how, got)
        except Dropped:
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            got.disconnected = True
            raise
        finally:
            got.ended_at = time.monotonic()

    def _behaviour(self, override: Any) -> Behaviour:
        if not isinstance(override, dict):
            return self.default
        known = {f.name for f in fields(Behaviour)}
        return replace(self.default, **{k: v for k, v in override.items() if k in known})

    async def _answer(
        self, request: web.Request, body: dict[str, Any], how: Behaviour, got: Received
    ) -> web.StreamResponse:
        if how.mode == "close":
            assert request.transport is not None
            request.transport.abort()
            raise Dropped  # nothing more to send on a dropped connection
        if how.mode == "error":
            error = {"message": f"{self.name} fails", "type": "server_error", "code": None}
            return web.json_response({"error": {**error, "param": None}}, status=how.status)
        endpoint = request.path.rsplit("/", 1)[-1]
        if endpoint == "embeddings":
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            got.finished = True
            return web.json_response(
                {
                    "object": "list",
                    "model": body["model"],
                    "data": [
                        {"object": "embedding", "index": i, "embedding": EMBEDDING}
                        for i in range(len(inputs))
                    ],
                    "usage": {
                        "prompt_tokens": how.prompt_tokens,
                        "total_tokens": how.prompt_tokens,
                    },
                },
                headers={"x-served-by": self.name},
            )
        chat = request.path.endswith("/chat/completions")
        if body.get("stream"):
            return await self._stream(request, body, how, got, chat)
        if how.delay:
            await asyncio.sleep(how.delay)
        text = "".join(_token(i) for i in range(how.chunks))
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        answer = {
            "id": f"{self.name}-{len(self.received)}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [choice],
            "usage": _usage(how),
        }
        if how.mode == "die":  # half the body, then the connection drops
            data = orjson.dumps(answer)
            response = web.StreamResponse(headers={"content-type": "application/json"})
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.abort()
            raise Dropped
        got.chunks_sent = how.chunks
        got.finished = True
        return web.json_response(answer, headers={"x-served-by": self.name})

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        how: Behaviour,
        got: Received,
        chat: bool,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream", "x-served-by": self.name}
        )
        await response.prepare(request)
        cid = f"{self.name}-{len(self.received)}"
        base = {
            "id": cid,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": body["model"],
        }

        def choice(text: str | None, finish: str | None = None) -> dict[str, Any]:
            if chat:
                delta = {} if text is None else {"content": text}
                return {"index": 0, "delta": delta, "finish_reason": finish}
            return {"index": 0, "text": text or "", "finish_reason": finish}

        async def event(payload: Any) -> None:
            if how.delay:
                await asyncio.sleep(how.delay)
            assert request.transport is not None
            if request.transport.is_closing():
                raise ConnectionResetError("the client went away")
            await response.write(b"data: " + orjson.dumps(payload) + b"\n\n")

        if chat:
            first = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            await event({**base, "choices": [{**first, "finish_reason": None}]})
        for i in range(how.chunks):
            await event({**base, "choices": [choice(_token(i))]})
            got.chunks_sent += 1
        if how.mode == "die":
            assert request.transport is not None
            request.transport.abort()  # the engine crashed: no terminating chunk, no [DONE]
            raise Dropped
        await event({**base, "choices": [choice(None, "stop")]})
        options = body.get("stream_options") or {}
        if how.usage and options.get("include_usage"):
            await event({**base, "choices": [], "usage": _usage(how)})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        got.finished = True
        return response


def _token(i: int) -> str:
    return f"tok{i} "


def _usage(how: Behaviour) -> dict[str, Any]:
    return {
        "prompt_tokens": how.prompt_tokens,
        "completion_tokens": how.chunks,
        "total_tokens": how.prompt_tokens + how.chunks,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
    }


class UpstreamLoop:
    """Fake upstream servers served from one event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fake-upstreams", daemon=True)
        self._runners: list[web.AppRunner] = []
        self.upstreams: list[FakeUpstream] = []
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, fn: Callable[[], Any], timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(timeout)

    def start(self, name: str) -> FakeUpstream:
        upstream = FakeUpstream(name)

        async def serve() -> None:
            app = web.Application()
            for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
                app.router.add_post(path, upstream.handle)
            runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            upstream.port = runner.addresses[0][1]
            self._runners.append(runner)

        self.call(serve)
        self.upstreams.append(upstream)
        return upstream

    def close(self) -> None:
        async def cleanup() -> None:
            for runner in self._runners:
                await runner.cleanup()

        with contextlib.suppress(RuntimeError):
            self.call(cleanup)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def refused_url() -> str:
    """A base URL where nothing listens: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
