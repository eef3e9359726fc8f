"""Forwarding one request to a replica: failover, streaming, cancellation, the usage record."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from suanli.gateway import protocol
from suanli.gateway.asgi import Receive, Send, send_error, send_json, stream_headers
from suanli.gateway.keys import KeyInfo
from suanli.gateway.metering import Journal
from suanli.gateway.prefix import prompt_blocks
from suanli.gateway.protocol import Call, GatewayError, Usage
from suanli.gateway.registry import Entry, Handle

SUFFIX = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}
CHUNK_OBJECT = {"chat": "chat.completion.chunk", "completions": "text_completion"}
UPSTREAM_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


@dataclass(slots=True)
class Exchange:
    """One request's bookkeeping, from authentication to its usage record."""

    rid: str
    key: KeyInfo
    endpoint: str
    start: float  # perf_counter
    started_at: float  # epoch seconds
    call: Call | None = None
    entry: Entry | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reserved: int = 0  # tokens held in the rate limiter
    funds_reserved: int = 0  # micro-units held from a prepaid tenant's funds
    handle: Handle | None = None
    attempts: int = 0
    usage: Usage | None = None
    chunks: int = 0
    ttft: float | None = None
    done: bool = False  # the answer is complete (a disconnect after this is not a cancel)
    client_gone: bool = False
    recorded: bool = False
    status: int = 0  # what the client was sent (set with the usage record)

    def usage_total(self) -> int:
        """Tokens the request really used (for the tokens-per-minute limits)."""
        if self.usage is not None:
            return self.usage.prompt_tokens + self.usage.completion_tokens
        if self.chunks == 0 and self.status >= 400:
            return 0  # refused or failed before any replica worked on it
        estimate = self.call.prompt_tokens_estimate if self.call else 0
        return estimate + self.chunks

    def fail(self, exc: GatewayError) -> None:
        """Remember why the request was refused before it reached a replica."""
        self.headers.update(exc.headers)


class Forwarder:
    def __init__(self, session: aiohttp.ClientSession, journal: Journal, max_attempts: int):
        self.session = session
        self.journal = journal
        self.max_attempts = max_attempts

    def record(self, ex: Exchange, status: int, outcome: str, code: str | None = "") -> None:
        """Write the request's one usage record (later calls are no-ops)."""
        if ex.recorded:
            return
        ex.recorded = True
        ex.status = status
        call, entry, handle = ex.call, ex.entry, ex.handle
        usage = ex.usage
        estimated = usage is None and outcome == "ok" and ex.endpoint != "embeddings"
        if usage is None:
            prompt = call.prompt_tokens_estimate if call and ex.attempts else 0
            usage = Usage(prompt, ex.chunks, 0)
        now = time.perf_counter()
        self.journal.write(
            {
                "request_id": ex.rid,
                "tenant_id": ex.key.tenant_id,
                "credential_id": ex.key.credential_id,
                "endpoint": ex.endpoint,
                "model": call.model[:200] if call else "",
                "catalog_model": entry.route.model if entry else "",
                "deployment_id": entry.route.deployment_id if entry else None,
                "replica_id": handle.upstream.replica_id if handle else None,
                "node": handle.upstream.node if handle else "",
                "chip": handle.upstream.chip if handle else "",
                "stream": bool(call and call.stream),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cached_tokens": usage.cached_tokens,
                "status": status,
                "outcome": outcome,
                "error_code": "usage_estimated" if estimated else (code or ""),
                "latency_us": int((now - ex.start) * 1e6),
                "ttft_us": int((ex.ttft - ex.start) * 1e6) if ex.ttft is not None else None,
                "attempts": ex.attempts,
                "started_at": ex.started_at,
                "finished_at": time.time(),
                "gateway": self.journal.name,
            }
        )

    async def forward(self, ex: Exchange, raw: bytes, receive: Receive, send: Send) -> None:
        call, entry = ex.call, ex.entry
        assert call is not None
        assert entry is not None
        body = raw
        strip_usage = False
        if call.stream and not call.include_usage:
            body, strip_usage = protocol.with_usage_requested(call.body), True
        blocks = prompt_blocks(call.prompt_text) if entry.router.name == "prefix_cache" else ()
        task = asyncio.current_task()
        assert task is not None

        async def watch() -> None:
            message = await receive()
            if message["type"] == "http.disconnect" and not ex.done:
                ex.client_gone = True
                task.cancel()

        watcher = asyncio.ensure_future(watch())
        response: aiohttp.ClientResponse | None = None
        try:
            response, data = await self._connect(ex, entry, body, blocks, call.stream)
            if data is None:
                await self._stream(ex, call, response, send, strip_usage)
            else:
                await self._whole(ex, response.status, data, send)
        except GatewayError as exc:
            ex.done = True
            self.record(ex, exc.status, "error", exc.code)
            await send_error(send, exc, ex.rid, ex.headers)
        except asyncio.CancelledError:
            if not ex.client_gone:
                raise
            task.uncancel()
            if response is not None:
                response.close()  # drop the connection: the engine stops generating
            self.record(ex, 499, "interrupted", "client_closed")
        finally:
            watcher.cancel()
            if response is not None:
                response.release()
            if ex.handle is not None:
                ex.handle.outstanding -= 1

    async def _connect(
        self, ex: Exchange, entry: Entry, body: bytes, blocks: Any, stream: bool
    ) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """Send to a replica; on a connection error or a 5xx try another one.

        Returns the response and, unless it is a stream to relay, its whole body: nothing has
        reached the client while the body is read, so a replica that fails meanwhile is
        failed over like one that refuses the connection."""
        tried: list[Handle] = []
        last = ""
        attempts = min(self.max_attempts, len(entry.handles))
        headers = {"content-type": "application/json", "x-request-id": ex.rid}
        for attempt in range(1, attempts + 1):
            candidates = [h for h in entry.handles if h not in tried] if tried else entry.handles
            handle = entry.router.choose(candidates, blocks)
            tried.append(handle)
            ex.attempts = attempt
            if ex.handle is not None:
                ex.handle.outstanding -= 1
            ex.handle = handle
            handle.outstanding += 1
            url = handle.url(ex.endpoint, SUFFIX[ex.endpoint])
            try:
                response = await self.session.post(url, data=body, headers=headers)
                if response.status < 500:
                    sse = response.content_type == "text/event-stream"
                    if stream and response.status == 200 and sse:
                        return response, None
                    return response, await response.read()
                text = (await response.read())[:300].decode("utf-8", "replace")
                response.release()
                last = f"{handle.upstream.node} answered {response.status}: {text}"
            except UPSTREAM_ERRORS as exc:
                last = f"{handle.upstream.node}: {type(exc).__name__}: {exc}"
        raise GatewayError(
            502,
            f"no replica of {entry.route.name!r} could answer ({attempts} tried); last: {last}",
            "server_error",
            None,
            "upstream_unavailable",
        )

    async def _whole(self, ex: Exchange, status: int, data: bytes, send: Send) -> None:
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None
        if status == 200 and isinstance(payload, dict):
            ex.usage = protocol.usage_of(payload)
            ex.ttft = time.perf_counter()
            ex.done = True
            self.record(ex, 200, "ok")
            await send_json(send, 200, data, ex.rid, ex.headers)
            return
        if not (isinstance(payload, dict) and isinstance(payload.get("error"), dict)):
            text = data[:500].decode("utf-8", "replace").strip() or "(an empty body)"
            message = f"the model replica answered {status}: {text}"
            data = GatewayError(status, message, code="upstream_error").body()
        ex.done = True
        self.record(ex, status, "error", f"upstream_{status}")
        await send_json(send, status, data, ex.rid, ex.headers)

    async def _stream(
        self,
        ex: Exchange,
        call: Call,
        response: aiohttp.ClientResponse,
        send: Send,
        strip_usage: bool,
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": stream_headers(ex.rid, ex.headers),
            }
        )
        buf = b""
        chunks = response.content.iter_any()
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except UPSTREAM_ERRORS as exc:  # the replica died mid-answer: never retried
                ex.done = True
                self.record(ex, 200, "interrupted", "upstream_closed")
                error = GatewayError(
                    502,
                    f"the model replica failed mid-answer ({type(exc).__name__}); "
                    "the answer is incomplete",
                    "server_error",
                    None,
                    "upstream_interrupted",
                )
                body = b"data: " + error.body() + b"\n\n"
                await send({"type": "http.response.body", "body": body, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            buf = buf + chunk if buf else chunk
            # every complete event of this read goes out in one write (fewer syscalls, and
            # nothing waits: what arrived together leaves together)
            out: list[bytes] = []
            while True:
                end, sep = _event_end(buf)
                if end < 0:
                    break
                event, buf = buf[: end + sep], buf[end + sep :]
                data = _data_of(event)
                if data is None:  # a comment or keep-alive: pass it on
                    out.append(event)
                    continue
                if data == b"[DONE]":
                    if call.include_usage and ex.usage is None:
                        out.append(_usage_event(ex, call))
                    ex.done = True
                    self.record(ex, 200, "ok")
                    out.append(event)
                    await send({"type": "http.response.body", "body": b"".join(out)})
                    return
                if _has_usage(data):
                    payload = orjson.loads(data)
                    ex.usage = protocol.usage_of(payload)
                    if strip_usage:  # the client did not ask for usage: it does not see it
                        if not payload.get("choices"):
                            continue
                        payload.pop("usage", None)
                        event = b"data: " + orjson.dumps(payload) + b"\n\n"
                if _has_text(data):
                    ex.chunks += 1
                    if ex.ttft is None:
                        ex.ttft = time.perf_counter()
                out.append(event)
            if out:
                body = out[0] if len(out) == 1 else b"".join(out)
                await send({"type": "http.response.body", "body": body, "more_body": True})
        ex.done = True  # the replica closed the stream without [DONE]
        self.record(ex, 200, "interrupted", "upstream_closed")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _event_end(buf: bytes) -> tuple[int, int]:
    """Where the first server-sent event in ``buf`` ends, and its separator's length."""
    lf = buf.find(b"\n\n")
    crlf = buf.find(b"\r\n\r\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return lf, 2


def _data_of(event: bytes) -> bytes | None:
    for line in event.splitlines():
        if line.startswith(b"data:"):
            return line[5:].strip()
    return None


def _has_usage(data: bytes) -> bool:
    at = data.find(b'"usage"')
    if at < 0:
        return False
    rest = data[at + 7 : at + 12].lstrip(b": ")
    return rest.startswith(b"{")


def _has_text(data: bytes) -> bool:
    """Whether a chunk carries generated text (one chunk is one token for the engines here)."""
    for key in (b'"content"', b'"text"'):
        at = data.find(key)
        if at >= 0:
            rest = data[at + len(key) : at + len(key) + 4].lstrip(b": ")
            if rest.startswith(b'"') and not rest.startswith(b'""'):
                return True
    return False


def _usage_event(ex: Exchange, call: Call) -> bytes:
    usage = ex.usage or Usage(call.prompt_tokens_estimate, ex.chunks, 0)
    payload = {
        "id": ex.rid,
        "object": CHUNK_OBJECT.get(ex.endpoint, "chat.completion.chunk"),
        "created": int(time.time()),
        "model": call.model,
        "choices": [],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        },
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"
