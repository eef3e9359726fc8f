"""Requests and tokens per minute, per API key and per tenant.

Each (subject, dimension) pair has a token bucket whose capacity is the per-minute limit and
which refills continuously at ``limit / 60`` per second, so a subject may burst up to its
limit and then proceeds at the steady rate. Over any window of ``T`` seconds a subject is
admitted at most ``limit + limit * T / 60`` requests, and as many tokens reserved.

``acquire`` is all-or-nothing: one request and the worst-case token estimate are taken from
every subject, or from none. ``settle`` corrects the token buckets once the real usage is
known; it gives back what was not used and takes any overshoot, which may leave a bucket
below zero (a debt that later requests wait out). It never refuses.

A refusal names the subject and the dimension that refused. Its ``retry_after_s`` is the
time until the request would fit, assuming nobody else spends from the same buckets; it is
``None`` when the request can never fit under the current limits (it asks for more tokens
than the tokens-per-minute limit, or a limit is 0). When several buckets refuse, the one
that can never fit wins, then the one with the longest wait.

The headers are OpenAI's (``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``). For
each dimension they describe the most constraining subject (the fewest units remaining; on a
refusal, the subject that refused), and a trio is left out when no subject is limited in that
dimension. ``reset`` is the time until the bucket is full again, written like ``"20ms"``,
``"1.5s"`` or ``"6m0s"``.

Subject keys must be distinct within one call. ``LocalRateLimiter`` keeps its buckets in the
process and is meant for a single gateway process; ``RedisRateLimiter`` (in
``suanli.gateway.ratelimit_redis``) shares them between processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from suanli.errors import SuanliError

if TYPE_CHECKING:
    from suanli.gateway.ratelimit_redis import RedisRateLimiter

__all__ = [
    "Dimension",
    "Limits",
    "LocalRateLimiter",
    "RateLimiter",
    "RateLimiterUnavailable",
    "RedisRateLimiter",
    "Subject",
    "Verdict",
    "format_duration",
    "make_rate_limiter",
]

Dimension = Literal["requests", "tokens"]

# a bucket within this of the amount asked counts as holding it (float rounding of the refill)
EPSILON = 1e-9
# how often the local limiter forgets buckets that are full again (the same as absent ones)
_SWEEP_S = 60.0


class RateLimiterUnavailable(SuanliError):  # noqa: N818 (the name the gateway uses)
    """The shared rate-limit store could not be reached in time (the gateway answers 503)."""

    code = "rate_limiter_unavailable"


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None  # requests per minute; None = unlimited
    tpm: int | None = None  # tokens per minute; None = unlimited

    def __post_init__(self) -> None:
        if (self.rpm is not None and self.rpm < 0) or (self.tpm is not None and self.tpm < 0):
            raise ValueError(f"rate limits cannot be negative: {self}")


@dataclass(frozen=True)
class Subject:
    key: str  # e.g. "key:42" or "tenant:7"
    limits: Limits


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    headers: dict[str, str]
    retry_after_s: float | None  # refused: seconds until it would fit; None: it never fits
    limited_by: str | None  # the Subject.key that refused
    dimension: Dimension | None  # what it refused on


class RateLimiter(Protocol):
    async def acquire(self, subjects: Sequence[Subject], tokens: int) -> Verdict:
        """Take 1 request and ``tokens`` from every subject, or nothing from any."""
        ...

    async def settle(
        self, subjects: Sequence[Subject], reserved_tokens: int, actual_tokens: int
    ) -> None:
        """Give back ``reserved - actual`` tokens (take the overshoot when negative)."""
        ...

    async def close(self) -> None: ...


# One bucket's view during an acquire: subject key, dimension, capacity, amount asked, and the
# level before anything is taken.
Entry = tuple[str, Dimension, int, float, float]


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes its reset headers: ``20ms``, ``1s``, ``1.5s``, ``6m0s``.

    Rounded up to the millisecond, so a client that waits this long is not early.
    """
    ms = math.ceil(seconds * 1000.0 - 1e-6)
    if ms < 1000:
        return f"{ms}ms" if ms > 0 else "0s"
    if ms < 60_000:
        return f"{ms / 1000:g}s"  # at most 5 significant digits: exact
    minutes, ms = divmod(ms, 60_000)
    if minutes < 60:
        return f"{minutes}m{ms / 1000:g}s"
    return f"{minutes // 60}h{minutes % 60}m{ms / 1000:g}s"


def _refusal(entries: Sequence[Entry]) -> tuple[Entry, float | None]:
    """The bucket that refuses, and how long until the request fits (None: never)."""
    worst: Entry | None = None
    worst_wait = -1.0
    for entry in entries:
        _, _, cap, need, level = entry
        if level >= need - EPSILON:
            continue
        if need > cap:
            return entry, None
        wait = (need - level) * 60.0 / cap
        if wait > worst_wait:
            worst, worst_wait = entry, wait
    if worst is None:  # the store refused on a rounding hair: the tightest bucket, no wait
        worst = min(entries, key=lambda e: e[4] - e[3])
        worst_wait = 0.0
    return worst, worst_wait


def _trio(headers: dict[str, str], names: tuple[str, str, str], cap: int, level: float) -> None:
    headers[names[0]] = str(cap)
    headers[names[1]] = str(math.floor(level)) if level >= 1.0 else "0"
    headers[names[2]] = format_duration((cap - level) * 60.0 / cap) if cap > 0 else "0s"


_REQUESTS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
_TOKENS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


def verdict(entries: Sequence[Entry], allowed: bool) -> Verdict:
    """The verdict and headers for an acquire over ``entries`` (levels before the take).

    Per dimension the headers show the bucket with the fewest units left (on a tie, the
    larger one, which takes longer to refill); on a refusal, the bucket that refused.
    """
    # the most constraining bucket per dimension: (capacity, level shown)
    req_cap = tok_cap = -1
    req_level = tok_level = math.inf
    for _, dim, cap, need, level in entries:
        if allowed:
            level -= need
        if dim == "requests":
            if level < req_level or (level == req_level and cap > req_cap):
                req_cap, req_level = cap, level
        elif level < tok_level or (level == tok_level and cap > tok_cap):
            tok_cap, tok_level = cap, level
    headers: dict[str, str] = {}
    if allowed:
        if req_cap >= 0:
            _trio(headers, _REQUESTS, req_cap, req_level)
        if tok_cap >= 0:
            _trio(headers, _TOKENS, tok_cap, tok_level)
        return Verdict(True, headers, None, None, None)
    refused, retry = _refusal(entries)
    key, dimension, cap, _, level = refused
    if dimension == "requests":
        req_cap, req_level = cap, level
    else:
        tok_cap, tok_level = cap, level
    if req_cap >= 0:
        _trio(headers, _REQUESTS, req_cap, req_level)
    if tok_cap >= 0:
        _trio(headers, _TOKENS, tok_cap, tok_level)
    return Verdict(False, headers, retry, key, dimension)


class _Bucket:
    __slots__ = ("cap", "level", "stamp")

    def __init__(self, cap: int, stamp: float) -> None:
        self.cap = cap  # the capacity it was last used with
        self.level = float(cap)
        self.stamp = stamp


def _refilled(table: dict[str, _Bucket], key: str, cap: int, now: float) -> _Bucket:
    bucket = table.get(key)
    if bucket is None:
        bucket = table[key] = _Bucket(cap, now)
        return bucket
    bucket.cap = cap
    elapsed = now - bucket.stamp
    if elapsed > 0.0:
        level = bucket.level + elapsed * cap / 60.0
        bucket.level = level if level < cap else float(cap)
        bucket.stamp = now
    elif bucket.level > cap:  # the limit was lowered
        bucket.level = float(cap)
    return bucket


class LocalRateLimiter:
    """Buckets in this process: exact for one gateway process, and a few microseconds a call.

    No lock is needed: nothing awaits between reading and writing a bucket.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}
        self._swept = clock()

    async def acquire(self, subjects: Sequence[Subject], tokens: int) -> Verdict:
        if tokens < 0:
            raise ValueError(f"tokens cannot be negative: {tokens}")
        now = self._clock()
        if now - self._swept >= _SWEEP_S:
            self._sweep(now)
        entries: list[Entry] = []
        buckets: list[_Bucket] = []
        allowed = True
        need = float(tokens)
        for subject in subjects:
            rpm = subject.limits.rpm
            tpm = subject.limits.tpm
            if rpm is not None:
                bucket = _refilled(self._requests, subject.key, rpm, now)
                if bucket.level < 1.0 - EPSILON:
                    allowed = False
                entries.append((subject.key, "requests", rpm, 1.0, bucket.level))
                buckets.append(bucket)
            if tpm is not None:
                bucket = _refilled(self._tokens, subject.key, tpm, now)
                if bucket.level < need - EPSILON:
                    allowed = False
                entries.append((subject.key, "tokens", tpm, need, bucket.level))
                buckets.append(bucket)
        if not entries:
            return Verdict(True, {}, None, None, None)
        if allowed:
            for entry, bucket in zip(entries, buckets, strict=True):
                bucket.level -= entry[3]
        return verdict(entries, allowed)

    async def settle(
        self, subjects: Sequence[Subject], reserved_tokens: int, actual_tokens: int
    ) -> None:
        delta = reserved_tokens - actual_tokens
        if delta == 0:
            return
        now = self._clock()
        for subject in subjects:
            tpm = subject.limits.tpm
            if tpm is not None:
                bucket = _refilled(self._tokens, subject.key, tpm, now)
                level = bucket.level + delta
                bucket.level = level if level < tpm else float(tpm)

    async def close(self) -> None:
        self._requests.clear()
        self._tokens.clear()

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled completely, so idle subjects cost no memory."""
        for table in (self._requests, self._tokens):
            idle = [
                k
                for k, b in table.items()
                if b.level + (now - b.stamp) * b.cap / 60.0 >= b.cap - EPSILON
            ]
            for key in idle:
                del table[key]
        self._swept = now

    def held_buckets(self) -> int:
        """How many buckets are held (for tests and metrics)."""
        return len(self._requests) + len(self._tokens)


def make_rate_limiter(redis_url: str | None) -> RateLimiter:
    """Redis-backed buckets shared by all gateway processes when a URL is given; else local."""
    if redis_url is None:
        return LocalRateLimiter()
    from suanli.gateway.ratelimit_redis import RedisRateLimiter

    return RedisRateLimiter(redis_url)


def __getattr__(name: str) -> object:
    # RedisRateLimiter lives in its own module so that the local path never imports redis
    if name == "RedisRateLimiter":
        from suanli.gateway.ratelimit_redis import RedisRateLimiter

        return RedisRateLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
