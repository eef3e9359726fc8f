"""The gateway as a bare ASGI application: the hot path, kept free of framework layers.

Per request: authenticate the key (cached), check the body, find the deployment, take the
rate limits (key and tenant), pick a replica (the deployment's routing policy), forward,
fail over to another replica on a connection error or a 5xx *before* the first byte reaches
the client (never after), and write exactly one usage record before the answer completes.
A client that goes away cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from suanli.gateway import protocol
from suanli.gateway.asgi import Receive, Scope, Send, send_error, send_json
from suanli.gateway.forward import Exchange, Forwarder
from suanli.gateway.keys import KeyCache, KeyInfo
from suanli.gateway.metering import Journal, flush_loop
from suanli.gateway.protocol import Call, GatewayError
from suanli.gateway.ratelimit import RateLimiter, RateLimiterUnavailable, make_rate_limiter
from suanli.gateway.registry import Entry, Registry
from suanli.gateway.wallet import Wallets
from suanli.settings import Settings
from suanli.store.db import make_engine, make_sessionmaker

log = logging.getLogger("suanli.gateway")


TEMPLATE_TOKENS = 64  # a chat template's preamble (a default system prompt), at most
TEMPLATE_TOKENS_PER_MESSAGE = 16  # role markers and separators per message, at most
PATHS = {
    "/v1/chat/completions": ("chat", protocol.chat),
    "/v1/completions": ("completions", protocol.completions),
    "/v1/embeddings": ("embeddings", protocol.embeddings),
}


def is_gateway_path(path: str) -> bool:
    return path in PATHS or path == "/v1/models" or path.startswith("/v1/models/")


class Gateway:
    """One gateway process's state: key cache, replica table, limiter, journal, upstream pool."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        engine: Engine,
        journal_dir: Path,
        *,
        redis_url: str | None = None,
        key_cache_s: float = 1.0,
        refresh_s: float = 0.5,
        flush_s: float = 0.2,
        fsync: bool = False,
        max_attempts: int = 3,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.keys = KeyCache(factory, key_cache_s)
        self.registry = Registry(factory, refresh_s)
        self.journal = Journal(journal_dir, engine, fsync)
        self.limiter = limiter or make_rate_limiter(redis_url)
        self.wallets = Wallets(factory, key_cache_s, flush_s)
        self.flush_s = flush_s
        self.max_attempts = max_attempts
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.forwarder: Forwarder | None = None
        self.started = False

    async def start(self) -> None:
        if self.started:
            return
        self.journal.open()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.journal.adopt_orphans)
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        # no total limit (a long generation is fine), but a replica silent for 10 minutes
        # mid-answer is dead: the client gets what was produced and the record says so
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=600)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # replicas set no cookies worth keeping
        )
        self.forwarder = Forwarder(self._session, self.journal, self.max_attempts)
        await self.registry.refresh()
        self._tasks = [
            asyncio.create_task(self.registry.run()),
            asyncio.create_task(flush_loop(self.journal, self.flush_s)),
        ]
        self.started = True

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
        await self.limiter.close()
        await asyncio.get_running_loop().run_in_executor(None, self.journal.close)
        self.started = False

    # --- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        rid = _request_id(scope)
        path = scope["path"]
        method = scope["method"]
        try:
            if path in PATHS:
                if method != "POST":
                    raise GatewayError(405, f"{path} takes POST", code="method_not_allowed")
                endpoint, parse = PATHS[path]
                await self._call(scope, receive, send, rid, endpoint, parse)
            elif path == "/v1/models" or path.startswith("/v1/models/"):
                if method != "GET":
                    raise GatewayError(405, f"{path} takes GET", code="method_not_allowed")
                await self._models(scope, send, rid, path[len("/v1/models/") :])
            else:
                raise GatewayError(404, f"no such endpoint: {path}", code="unknown_url")
        except GatewayError as exc:
            await send_error(send, exc, rid)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _authenticate(self, scope: Scope) -> KeyInfo:
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer":
                    token = rest.strip()
                break
        if not token:
            raise GatewayError(
                401,
                "You didn't provide an API key: send Authorization: Bearer <key>",
                code="missing_api_key",
            )
        info = await self.keys.resolve(token)
        if info is None:
            raise GatewayError(401, "Incorrect or revoked API key", code="invalid_api_key")
        return info

    def _entry(self, model: str, key: KeyInfo) -> Entry:
        entry = self.registry.entries.get(model)
        visible = entry is not None and entry.route.tenant_id in (None, key.tenant_id)
        if entry is None or not visible:
            raise GatewayError(
                404,
                f"The model {model!r} does not exist or you do not have access to it",
                param="model",
                code="model_not_found",
            )
        if key.models is not None and model not in key.models:
            raise GatewayError(
                403,
                f"This API key may not call {model!r}",
                "permission_error",
                "model",
                "model_not_allowed",
            )
        return entry

    async def _call(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rid: str,
        endpoint: str,
        parse: Callable[[dict[str, Any]], Call],
    ) -> None:
        start = time.perf_counter()
        arrived = time.monotonic()
        key = await self._authenticate(scope)
        assert self.forwarder is not None, "the gateway has not started"
        exchange = Exchange(rid, key, endpoint, start, time.time())
        try:
            raw = await _read_body(receive)
            call = parse(protocol.parse_json(raw))
            exchange.call = call
            known = self.registry.entries.get(call.model)
            if known is None or not known.handles:  # the table may be behind the database
                await self.registry.fresh(arrived)
            entry = self._entry(call.model, key)
            exchange.entry = entry
            reserved = _reserve(call, entry.route.context_length)
            if not entry.handles:  # before the limits: a refusal must not spend the budget
                raise GatewayError(
                    503,
                    f"no replica of {entry.route.name!r} is ready yet; try again shortly",
                    "server_error",
                    "model",
                    "model_not_ready",
                    {"retry-after": "5"},
                )
            if key.subjects:
                try:
                    verdict = await self.limiter.acquire(key.subjects, reserved)
                except RateLimiterUnavailable as exc:
                    raise GatewayError(
                        503, f"rate limits cannot be checked: {exc}", "server_error"
                    ) from None
                exchange.headers.update(verdict.headers)
                if not verdict.allowed:
                    raise _limited(verdict, key)
                exchange.reserved = reserved
            if key.prepaid:
                await self._reserve_funds(exchange, key, entry, reserved)
        except GatewayError as exc:
            exchange.fail(exc)
            self.forwarder.record(exchange, exc.status, "error", exc.code)
            await send_error(send, exc, rid, exchange.headers)
            return
        try:
            await self.forwarder.forward(exchange, raw, receive, send)
        finally:
            if exchange.reserved:
                await self.limiter.settle(key.subjects, exchange.reserved, exchange.usage_total())
            if exchange.funds_reserved and exchange.entry is not None:
                await self._settle_funds(exchange, key, exchange.entry)

    async def _reserve_funds(
        self, exchange: Exchange, key: KeyInfo, entry: Entry, tokens: int
    ) -> None:
        """Hold the request's worst-case cost, or refuse it: 429 insufficient_quota."""
        call = exchange.call
        assert call is not None
        book = await self.wallets.book()
        prompt = min(call.prompt_tokens_estimate, tokens)
        # an upper bound, not the estimate: a token is at least one byte of the prompt, and
        # chat templates add a few tokens per message and a preamble
        messages = call.body.get("messages")
        turns = len(messages) if isinstance(messages, list) else 1
        bound = len(call.prompt_text.encode()) + TEMPLATE_TOKENS_PER_MESSAGE * turns
        bound += TEMPLATE_TOKENS
        worst = Wallets.cost(book, entry.route.model, bound, tokens - prompt)
        if not await self.wallets.reserve(key.tenant_id, entry.route.model, worst):
            if exchange.reserved:
                await self.limiter.settle(key.subjects, exchange.reserved, 0)
                exchange.reserved = 0
            raise GatewayError(
                429,
                "You exceeded your current quota: the tenant's balance cannot cover this "
                "request (top up, or lower max_tokens)",
                "insufficient_quota",
                None,
                "insufficient_quota",
            )
        exchange.funds_reserved = worst

    async def _settle_funds(self, exchange: Exchange, key: KeyInfo, entry: Entry) -> None:
        usage = exchange.usage
        book = await self.wallets.book()
        if usage is not None:
            actual = Wallets.cost(
                book,
                entry.route.model,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens,
            )
        elif exchange.chunks:  # an interrupted stream: what it produced
            estimate = exchange.call.prompt_tokens_estimate if exchange.call else 0
            actual = Wallets.cost(book, entry.route.model, estimate, exchange.chunks)
        else:  # nothing was produced: nothing is charged
            actual = 0
        self.wallets.settle(key.tenant_id, exchange.funds_reserved, actual)

    async def _models(self, scope: Scope, send: Send, rid: str, model_id: str) -> None:
        key = await self._authenticate(scope)
        names = sorted(
            name
            for name, entry in self.registry.entries.items()
            if entry.route.tenant_id in (None, key.tenant_id)
            and (key.models is None or name in key.models)
        )
        cards = {
            name: {
                "id": name,
                "object": "model",
                "created": self.registry.entries[name].route.created_at,
                "owned_by": "suanli",
            }
            for name in names
        }
        if model_id:
            if model_id not in cards:
                raise GatewayError(
                    404,
                    f"The model {model_id!r} does not exist",
                    param="model",
                    code="model_not_found",
                )
            payload: Any = cards[model_id]
        else:
            payload = {"object": "list", "data": list(cards.values())}
        await send_json(send, 200, orjson.dumps(payload), rid)


def _reserve(call: Call, context_length: int) -> int:
    """The worst-case tokens of a call, for the tokens-per-minute limits."""
    if call.prompt_tokens_estimate > context_length:
        raise GatewayError(
            400,
            f"This model's maximum context length is {context_length} tokens; the prompt "
            f"is about {call.prompt_tokens_estimate} tokens",
            param="messages" if call.endpoint == "chat" else "prompt",
            code="context_length_exceeded",
        )
    if call.max_tokens is not None and call.max_tokens > context_length:
        raise GatewayError(
            400,
            f"max_tokens is {call.max_tokens}; this model's context is {context_length} tokens",
            param="max_tokens",
            code="context_length_exceeded",
        )
    if call.endpoint == "embeddings":
        return call.prompt_tokens_estimate
    room = max(context_length - call.prompt_tokens_estimate, 1)
    return call.prompt_tokens_estimate + min(call.max_tokens or room, room)


def _limited(verdict: Any, key: KeyInfo) -> GatewayError:
    who = "tenant" if str(verdict.limited_by).startswith("tenant:") else "API key"
    dimension = verdict.dimension or "requests"
    if verdict.retry_after_s is None:
        message = f"The request needs more {dimension} than the {who}'s per-minute limit"
        headers: dict[str, str] = {}
    else:
        wait = max(1, int(verdict.retry_after_s + 0.999))
        message = f"Rate limit reached for {dimension} per minute of this {who}; retry in {wait} s"
        headers = {"retry-after": str(wait)}
    return GatewayError(429, message, "requests", None, "rate_limit_exceeded", headers)


def _request_id(scope: Scope) -> str:
    """Our own id for every request (a UUID, which every engine accepts as its request id).

    A client's own ``x-request-id`` is not reused: ids must be unique for exactly-once
    metering, and a client may repeat one."""
    return str(uuid.uuid4())


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise GatewayError(499, "client closed the request", code="client_closed")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > protocol.MAX_BODY_BYTES:
            raise GatewayError(
                413, f"the body exceeds {protocol.MAX_BODY_BYTES} bytes", code="body_too_large"
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def from_settings(settings: Settings, engine: Engine) -> Gateway:
    return Gateway(
        make_sessionmaker(engine),
        engine,
        settings.journal_dir(),
        redis_url=settings.gateway_redis_url,
        key_cache_s=settings.gateway_key_cache_s,
        refresh_s=settings.gateway_refresh_s,
        flush_s=settings.gateway_flush_s,
        fsync=settings.gateway_fsync,
        max_attempts=settings.gateway_max_attempts,
    )


def standalone() -> Gateway:
    """A gateway-only process configured from ``SUANLI_*`` (``uvicorn --factory``)."""
    settings = Settings()
    return from_settings(settings, make_engine(settings.resolved_database_url()))


class Dispatch:
    """One server for both: OpenAI paths go to the gateway, the rest to the control plane."""

    def __init__(self, api: Callable[..., Any], gateway: Gateway) -> None:
        self.api = api
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_gateway_path(scope["path"]):
            await self.gateway(scope, receive, send)
        else:
            await self.api(scope, receive, send)
