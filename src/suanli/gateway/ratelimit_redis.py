"""Rate-limit buckets in Redis, shared by every gateway process.

One Lua script does a whole acquire (or settle) for all subjects of a request, so it is atomic
across them and costs one round trip (``EVALSHA``; the script is loaded once, again after a
``NOSCRIPT`` reply). The script reads the clock with Redis ``TIME``, so processes on hosts
with different clocks agree; Redis replicates scripts by their effects (the default since
5.0 and the only mode since 7.0), which is what allows ``TIME`` before a write.

A subject's two buckets are one hash under ``PREFIX + subject key``: the requests level, the
tokens level and the time of the last refill. It expires when both would be full again (plus a
second), since a full bucket and an absent one are the same; idle subjects thus leave nothing
behind. A single Redis (or a primary) is assumed; on Redis Cluster give a prefix with a hash
tag, such as ``"suanli:{rl}:"``, so that the keys of one request share a slot.

When Redis does not answer within ``timeout_s`` (0.5 s), ``acquire`` raises
``RateLimiterUnavailable``. ``settle`` logs and drops the correction instead: the response
has been sent by then, and one request's estimate error is all that is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from suanli.gateway.ratelimit import (
    EPSILON,
    Entry,
    RateLimiterUnavailable,
    Subject,
    Verdict,
    verdict,
)

log = logging.getLogger(__name__)

# KEYS[i]: the hash of subject i: {r: requests level, t: tokens level, s: microseconds}.
# ARGV[1]: "a" (acquire) or "s" (settle); ARGV[2]: the rounding allowance. Then four per
# subject: its rpm and tpm (-1: unlimited), and the amounts for each: what to take when
# acquiring; what to give back (negative: take) when settling.
# Acquire returns {1 if taken else 0, then per subject its requests and tokens levels before
# the take}; settle returns 1.
SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local eps = tonumber(ARGV[2])
local n = #KEYS
local caps, amounts, levels, stamps, stale = {}, {}, {}, {}, {}
for i = 1, n do
  local stored = redis.call('HMGET', KEYS[i], 'r', 't', 's')
  local stamp, elapsed = now, 0
  if stored[3] then
    stamp = tonumber(stored[3])
    if now > stamp then
      elapsed = now - stamp
      stamp = now
    end
  end
  stamps[i] = stamp
  for d = 1, 2 do
    local j = 2 * i - 2 + d
    local cap = tonumber(ARGV[4 * i - 2 + d])
    local level = cap
    if stored[d] then
      if cap < 0 then
        stale[i] = true
      else
        level = math.min(tonumber(stored[d]) + elapsed * cap / 60000000, cap)
      end
    end
    caps[j], amounts[j], levels[j] = cap, tonumber(ARGV[4 * i + d]), level
  end
end

-- write subject i back; it expires when all its buckets would be full again (plus a second)
local function store(i, requests, tokens)
  local key, fields, ttl = KEYS[i], {}, 0
  for d, level in ipairs({requests, tokens}) do
    local cap = caps[2 * i - 2 + d]
    if cap >= 0 then
      table.insert(fields, d == 1 and 'r' or 't')
      table.insert(fields, string.format('%.17g', level))
      if cap > 0 and level < cap then ttl = math.max(ttl, (cap - level) * 60000 / cap) end
    end
  end
  if ttl == 0 then
    redis.call('DEL', key)
    return
  end
  if stale[i] then redis.call('DEL', key) end
  redis.call('HSET', key, 's', string.format('%.0f', stamps[i]), unpack(fields))
  redis.call('PEXPIRE', key, math.min(math.ceil(ttl) + 1000, 86400000))
end

if ARGV[1] == 'a' then
  local taken = 1
  for j = 1, 2 * n do
    if caps[j] >= 0 and levels[j] < amounts[j] - eps then
      taken = 0
      break
    end
  end
  local out = {taken}
  for i = 1, n do
    if taken == 1 then
      store(i, levels[2 * i - 1] - amounts[2 * i - 1], levels[2 * i] - amounts[2 * i])
    end
    out[2 * i] = string.format('%.17g', levels[2 * i - 1])
    out[2 * i + 1] = string.format('%.17g', levels[2 * i])
  end
  return out
end
for i = 1, n do
  store(i, levels[2 * i - 1], math.min(levels[2 * i] + amounts[2 * i], caps[2 * i]))
end
return 1
"""
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


class RedisRateLimiter:
    """Token buckets in Redis, exact across any number of gateway processes."""

    def __init__(self, url: str, prefix: str = "suanli:rl:", *, timeout_s: float = 0.5) -> None:
        self._prefix = prefix
        self._timeout = timeout_s
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    async def acquire(self, subjects: Sequence[Subject], tokens: int) -> Verdict:
        if tokens < 0:
            raise ValueError(f"tokens cannot be negative: {tokens}")
        keys: list[str] = []
        args: list[str | float | int] = ["a", EPSILON]
        limited: list[Subject] = []
        for subject in subjects:
            rpm = subject.limits.rpm
            tpm = subject.limits.tpm
            if rpm is None and tpm is None:
                continue
            keys.append(self._prefix + subject.key)
            args += (-1 if rpm is None else rpm, -1 if tpm is None else tpm, 1, tokens)
            limited.append(subject)
        if not keys:
            return Verdict(True, {}, None, None, None)
        reply = await self._run(keys, args)
        entries: list[Entry] = []
        need = float(tokens)
        for i, subject in enumerate(limited):
            rpm = subject.limits.rpm
            tpm = subject.limits.tpm
            if rpm is not None:
                entries.append((subject.key, "requests", rpm, 1.0, float(reply[2 * i + 1])))
            if tpm is not None:
                entries.append((subject.key, "tokens", tpm, need, float(reply[2 * i + 2])))
        return verdict(entries, int(reply[0]) == 1)

    async def settle(
        self, subjects: Sequence[Subject], reserved_tokens: int, actual_tokens: int
    ) -> None:
        delta = reserved_tokens - actual_tokens
        keys: list[str] = []
        args: list[str | float | int] = ["s", EPSILON]
        for subject in subjects:
            rpm = subject.limits.rpm
            tpm = subject.limits.tpm
            if tpm is not None:  # the requests bucket is passed along so it keeps its refill
                keys.append(self._prefix + subject.key)
                args += (-1 if rpm is None else rpm, tpm, 0, delta)
        if delta == 0 or not keys:
            return
        try:
            await self._run(keys, args)
        except RateLimiterUnavailable as exc:
            log.warning("token settlement dropped (%d tokens): %s", delta, exc)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(self, keys: list[str], args: list[str | float | int]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    return await self._redis.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
                except NoScriptError:
                    await self._redis.script_load(SCRIPT)
                    return await self._redis.evalsha(SCRIPT_SHA, len(keys), *keys, *args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise RateLimiterUnavailable(
                f"the rate-limit store is unavailable (timeout {self._timeout:g}s): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
