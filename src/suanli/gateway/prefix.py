"""Prompt -> prefix block keys, the unit the cache-aware router reasons in.

A prompt is cut into fixed-size blocks of characters and each block gets a *chained* key: the
hash of (previous key, block text). A key therefore identifies the whole prefix up to and
including its block, exactly as a paged KV cache identifies a cached page by the tokens before
it: two prompts share their first k keys if and only if (up to hash collisions) they share
their first k blocks of text, and the first key where they differ and every key after it differ.

Only full blocks count. The trailing partial block is never cacheable as such (an engine caches
whole pages), so it gets no key; a prompt shorter than one block has no keys at all.

Characters stand in for tokens: the gateway does not tokenize on the hot path. 64 characters
are roughly 16 tokens of English text, a usual KV page size; the router only needs prefixes to
line up, not to match the engine's pages exactly.

Keys come from Python's built-in ``hash`` of the pair (SipHash-1-3 over the text with a
per-process random key, 64 bits, in C). They are stable within one process, which is all the
in-process router needs, and they cost about a quarter of ``hashlib.blake2b(digest_size=8)``
(measured on 6,400 characters, 100 blocks: about 23 us against about 90 us, on a machine where an
empty ``for`` loop of 10 million turns takes 0.65 s). If keys ever have to agree between
processes (a router state shared by several gateway instances), switch to blake2b: the chaining
stays the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DEFAULT_BLOCK_CHARS", "chat_prompt_text", "prompt_blocks"]

DEFAULT_BLOCK_CHARS = 64

# Separators of the canonical chat rendering: ASCII unit/record separators, which ordinary
# prompt text does not contain, so "role, content" boundaries cannot be forged by accident.
_FIELD = "\x1f"
_MESSAGE = "\x1e"


def prompt_blocks(text: str, block_chars: int = DEFAULT_BLOCK_CHARS) -> list[int]:
    """The chained keys of the full ``block_chars``-character blocks of ``text``.

    ``keys[i]`` identifies ``text[: (i + 1) * block_chars]``; a trailing partial block has no key.
    """
    if block_chars < 1:
        raise ValueError(f"block_chars must be at least 1, got {block_chars}")
    keys: list[int] = []
    append = keys.append
    key = 0
    end = len(text) - len(text) % block_chars
    for start in range(0, end, block_chars):
        key = hash((key, text[start : start + block_chars]))
        append(key)
    return keys


def chat_prompt_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """A canonical rendering of OpenAI chat ``messages`` for prefix keying.

    Each message renders on its own and the renderings are concatenated, so the rendering of a
    conversation's first k messages is a prefix of the rendering of the whole conversation (the
    property multi-turn caching rests on). A message contributes its role, its ``name`` if any,
    its content (a string, or a list of parts: text parts by their text, other parts such as
    images or audio by their canonical JSON, so two different images never key alike), and for
    tool traffic its ``tool_calls`` and ``tool_call_id``. Unknown fields are ignored.
    """
    out: list[str] = []
    for message in messages:
        out.append(str(message.get("role", "")))
        name = message.get("name")
        if name:
            out.append(_FIELD)
            out.append(str(name))
        out.append(_FIELD)
        _render_content(message.get("content"), out)
        tool_calls = message.get("tool_calls")
        if tool_calls:
            out.append(_FIELD)
            out.append(_canonical_json(tool_calls))
        tool_call_id = message.get("tool_call_id")
        if tool_call_id:
            out.append(_FIELD)
            out.append(str(tool_call_id))
        out.append(_MESSAGE)
    return "".join(out)


def _render_content(content: object, out: list[str]) -> None:
    if content is None:
        return
    if isinstance(content, str):
        out.append(content)
        return
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                out.append(str(part.get("text", "")))
            elif isinstance(part, str):
                out.append(part)
            else:
                out.append(_canonical_json(part))
        return
    out.append(_canonical_json(content))


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
