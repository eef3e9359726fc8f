"""The OpenAI wire format at the gateway: request checks and error bodies.

Checks are hand-written rather than pydantic models: this is the hot path, and the engine
behind validates the rest. What is checked here is what the gateway itself depends on
(model, stream, token budget, prompt size) plus the common mistakes a client should hear
about with the field named, before any accelerator time is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_BODY_BYTES = 16 * 1024 * 1024
CHARS_PER_TOKEN = 4  # the admission estimate; engines count exactly and the usage says so
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class GatewayError(Exception):
    """An answer in OpenAI's error shape with a fitting status."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )


def bad(message: str, param: str | None = None, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", param, code)


@dataclass(slots=True)
class Call:
    """A checked request: what routing, limits and metering need from it."""

    endpoint: str  # chat | completions | embeddings
    model: str
    body: dict[str, Any]
    stream: bool
    include_usage: bool  # the client asked for the usage chunk
    prompt_text: str
    prompt_tokens_estimate: int
    max_tokens: int | None


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad(f"the body is not valid JSON: {exc}", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object", None, "invalid_json")
    return body


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("you must provide a model parameter", "model", "missing_required_parameter")
    return model


def _int_param(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad(f"{name} must be an integer", name, "invalid_type")
    if value < minimum:
        raise bad(f"{name} must be at least {minimum}, got {value}", name)
    return value


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad("stream must be a boolean", "stream", "invalid_type")
    options = body.get("stream_options")
    include = False
    if options is not None:
        if not stream:
            raise bad("stream_options is only allowed when stream is true", "stream_options")
        if not isinstance(options, dict):
            raise bad("stream_options must be an object", "stream_options", "invalid_type")
        include = options.get("include_usage") is True
    return stream, include


def _content_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if not isinstance(part, dict):
                raise bad(f"{where}[{i}] must be an object", f"{where}[{i}]", "invalid_type")
            text = part.get("text")
            if isinstance(text, str):
                parts.append(text)
        return "\n".join(parts)
    raise bad(f"{where} must be a string or a list of parts", where, "invalid_type")


def chat(body: dict[str, Any]) -> Call:
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty array", "messages", "invalid_type")
    texts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad(f"messages[{i}] must be an object", f"messages[{i}]", "invalid_type")
        role = message.get("role")
        if role not in ROLES:
            raise bad(
                f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}",
                f"messages[{i}].role",
            )
        texts.append(f"{role}\n{_content_text(message.get('content'), f'messages[{i}].content')}")
    max_tokens = _int_param(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _int_param(body, "max_tokens", 1)
    _int_param(body, "n", 1)
    stream, include = _stream(body)
    text = "\n".join(texts)
    return Call("chat", model, body, stream, include, text, _estimate(text), max_tokens)


def completions(body: dict[str, Any]) -> Call:
    model = _model(body)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        text = prompt
        estimate = _estimate(text)
    elif isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            text = "\n".join(prompt)
            estimate = _estimate(text)
        elif all(isinstance(p, int) and not isinstance(p, bool) for p in prompt):
            text, estimate = "", len(prompt)
        else:
            raise bad("prompt must be a string, strings, or token ids", "prompt", "invalid_type")
    else:
        raise bad("prompt must be a non-empty string or array", "prompt", "invalid_type")
    max_tokens = _int_param(body, "max_tokens", 1)
    stream, include = _stream(body)
    return Call("completions", model, body, stream, include, text, estimate, max_tokens)


def embeddings(body: dict[str, Any]) -> Call:
    model = _model(body)
    data = body.get("input")
    if isinstance(data, str) and data:
        texts = [data]
    elif isinstance(data, list) and data and len(data) <= 2048:
        if not all(isinstance(t, str) and t for t in data):
            raise bad("input must be non-empty strings", "input", "invalid_type")
        texts = data
    else:
        raise bad("input must be a non-empty string or up to 2048 strings", "input")
    text = "\n".join(texts)
    return Call("embeddings", model, body, False, False, text, _estimate(text), None)


def _estimate(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


def with_usage_requested(body: dict[str, Any]) -> bytes:
    """The body sent upstream for a stream: always ask for the usage chunk (for metering)."""
    options = dict(body.get("stream_options") or {})
    options["include_usage"] = True
    return orjson.dumps({**body, "stream_options": options})


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


def usage_of(payload: dict[str, Any]) -> Usage | None:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        _count(cached),
    )


MAX_COUNT = 2**31 - 1  # the usage table's token columns are 32-bit


def _count(value: Any) -> int:
    """A token count an engine reported; nonsense is 0, and no count is beyond the columns
    (a record the database refuses would hold back every record after it)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return 0
    return min(value, MAX_COUNT)
