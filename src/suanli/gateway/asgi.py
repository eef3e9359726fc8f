"""ASGI types and the few response writers the gateway needs."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from suanli.gateway.protocol import GatewayError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _headers(
    rid: str, extra: dict[str, str] | None, content_type: bytes
) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", content_type), (b"x-request-id", rid.encode())]
    if extra:
        headers.extend((k.encode(), v.encode()) for k, v in extra.items())
    return headers


async def send_json(
    send: Send, status: int, body: bytes, rid: str, extra: dict[str, str] | None = None
) -> None:
    headers = _headers(rid, extra, b"application/json")
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, exc: GatewayError, rid: str, extra: dict[str, str] | None = None
) -> None:
    headers = dict(extra or {})
    headers.update(exc.headers)
    status = 400 if exc.status == 499 else exc.status
    with contextlib.suppress(OSError):  # the client may be gone already
        await send_json(send, status, exc.body(), rid, headers)


def stream_headers(rid: str, extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    headers = _headers(rid, extra, b"text/event-stream; charset=utf-8")
    headers.append((b"cache-control", b"no-cache"))
    return headers
