"""The Redis rate limiter against a real redis-server started for this module."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio as aioredis

from suanli.gateway.ratelimit import (
    Limits,
    LocalRateLimiter,
    RateLimiter,
    RateLimiterUnavailable,
    Subject,
    Verdict,
    make_rate_limiter,
)
from suanli.gateway.ratelimit import RedisRateLimiter as ReExported
from suanli.gateway.ratelimit_redis import RedisRateLimiter

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.slow

T = TypeVar("T")
KEY = "key:42"
TENANT = "tenant:7"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH (Debian package redis-server)")
    for _ in range(3):  # the free port may be taken before the server binds it
        port = free_port()
        workdir = tmp_path_factory.mktemp("redis")
        with (workdir / "redis.log").open("wb") as log:
            cmd = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1"]
            cmd += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 10.0
                while proc.poll() is None and time.monotonic() < deadline:
                    if answers_ping(port):
                        yield f"redis://127.0.0.1:{port}/0"
                        return
                    time.sleep(0.02)
            finally:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    pytest.fail(f"redis-server did not start; see {workdir / 'redis.log'}")


def inspector(url: str) -> redis.Redis:
    """A plain client on the test server, to look at what the limiter left there."""
    return redis.Redis(port=urlsplit(url).port or 6379)


def new_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}:"


def with_limiter(
    url: str, scenario: Callable[[RedisRateLimiter], Awaitable[T]], prefix: str | None = None
) -> T:
    async def main() -> T:
        rl = RedisRateLimiter(url, prefix=prefix or new_prefix())
        try:
            return await scenario(rl)
        finally:
            await rl.close()

    return asyncio.run(main())


def test_rpm_exhausted_is_refused_with_headers_and_retry_after(redis_url: str) -> None:
    key = [Subject(KEY, Limits(rpm=3))]

    async def scenario(rl: RedisRateLimiter) -> list[Verdict]:
        return [await rl.acquire(key, 0) for _ in range(4)]

    verdicts = with_limiter(redis_url, scenario)
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [v.headers["x-ratelimit-remaining-requests"] for v in verdicts] == ["2", "1", "0", "0"]
    assert verdicts[0].headers["x-ratelimit-reset-requests"] in ("20s", "19.999s")
    assert set(verdicts[0].headers) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }
    refused = verdicts[3]
    assert (refused.limited_by, refused.dimension) == (KEY, "requests")
    assert refused.retry_after_s == pytest.approx(20.0, abs=0.5)


def test_buckets_refill_over_time(redis_url: str) -> None:
    key = [Subject(KEY, Limits(rpm=600))]  # 10 a second

    async def scenario(rl: RedisRateLimiter) -> None:
        started = time.monotonic()
        admitted = 0
        while (v := await rl.acquire(key, 0)).allowed:
            admitted += 1
        elapsed = time.monotonic() - started
        assert 600 <= admitted <= 600 + 10 * elapsed + 1
        assert v.retry_after_s is not None
        assert 0 < v.retry_after_s <= 0.1
        await asyncio.sleep(v.retry_after_s)  # waiting as told is enough
        assert (await rl.acquire(key, 0)).allowed

    with_limiter(redis_url, scenario)


def test_tokens_reserved_then_given_back_or_taken_at_settlement(redis_url: str) -> None:
    key = [Subject(KEY, Limits(tpm=600))]  # 10 tokens a second

    async def scenario(rl: RedisRateLimiter) -> None:
        v = await rl.acquire(key, 500)
        assert v.allowed
        assert v.headers["x-ratelimit-remaining-tokens"] == "100"
        v = await rl.acquire(key, 200)
        assert (v.allowed, v.limited_by, v.dimension) == (False, KEY, "tokens")
        assert v.retry_after_s == pytest.approx(10.0, abs=1.0)  # less any refill since
        await rl.settle(key, 500, 100)  # 400 back
        v = await rl.acquire(key, 200)
        assert v.allowed
        assert 300 <= int(v.headers["x-ratelimit-remaining-tokens"]) <= 310
        await rl.settle(key, 200, 700)  # 500 more: a debt of about 200
        v = await rl.acquire(key, 1)
        assert not v.allowed
        assert v.headers["x-ratelimit-remaining-tokens"] == "0"
        assert v.retry_after_s == pytest.approx(20.1, abs=1.0)

    with_limiter(redis_url, scenario)


def test_a_request_larger_than_the_tpm_limit_never_fits(redis_url: str) -> None:
    subjects = [Subject(KEY, Limits(rpm=10)), Subject(TENANT, Limits(tpm=4096))]

    async def scenario(rl: RedisRateLimiter) -> None:
        v = await rl.acquire(subjects, 5000)
        assert (v.allowed, v.retry_after_s) == (False, None)
        assert (v.limited_by, v.dimension) == (TENANT, "tokens")
        assert v.headers["x-ratelimit-remaining-requests"] == "10"

    with_limiter(redis_url, scenario)


def test_all_or_nothing_across_key_and_tenant(redis_url: str) -> None:
    key = Subject(KEY, Limits(rpm=100, tpm=10_000))
    tenant = Subject(TENANT, Limits(rpm=1, tpm=1000))

    async def scenario(rl: RedisRateLimiter) -> None:
        assert (await rl.acquire([key, tenant], 800)).allowed
        v = await rl.acquire([key, tenant], 100)
        assert (v.allowed, v.limited_by, v.dimension) == (False, TENANT, "requests")
        v = await rl.acquire([key, tenant], 900)
        assert not v.allowed
        assert v.limited_by == TENANT
        v = await rl.acquire([key], 0)  # only the first request is on the key's buckets
        assert v.headers["x-ratelimit-remaining-requests"] == "98"
        assert v.headers["x-ratelimit-remaining-tokens"] == "9200"

    with_limiter(redis_url, scenario)


def test_unlimited_subjects_cost_nothing(redis_url: str) -> None:
    prefix = new_prefix()

    async def scenario(rl: RedisRateLimiter) -> None:
        v = await rl.acquire([Subject(KEY, Limits())], 10**9)
        assert v == Verdict(True, {}, None, None, None)
        await rl.settle([Subject(KEY, Limits())], 10, 10**6)

    with_limiter(redis_url, scenario, prefix)
    with inspector(redis_url) as r:
        assert r.keys(f"{prefix}*") == []


def test_buckets_expire_when_they_would_be_full_again(redis_url: str) -> None:
    prefix = new_prefix()
    key = [Subject(KEY, Limits(rpm=10, tpm=1000))]
    tenant = [Subject(TENANT, Limits(tpm=1000))]

    async def take(rl: RedisRateLimiter) -> None:
        assert (await rl.acquire(key, 100)).allowed
        assert (await rl.acquire(tenant, 100)).allowed

    async def give_back(rl: RedisRateLimiter) -> None:
        await rl.settle(key, 100, 0)
        await rl.settle(tenant, 100, 0)

    with_limiter(redis_url, take, prefix)
    with inspector(redis_url) as r:
        # a tenth of each limit was taken: full again in 6 s, expiring a second after that
        for subject in (KEY, TENANT):
            assert 5000 < r.pttl(f"{prefix}{subject}") <= 7000
        with_limiter(redis_url, give_back, prefix)
        assert r.exists(f"{prefix}{TENANT}") == 0  # full again: nothing kept
        assert 5000 < r.pttl(f"{prefix}{KEY}") <= 7000  # still one request short


def test_a_limit_lifted_and_set_again_starts_afresh(redis_url: str) -> None:
    async def scenario(rl: RedisRateLimiter) -> None:
        assert (await rl.acquire([Subject(KEY, Limits(rpm=5, tpm=100))], 90)).allowed
        v = await rl.acquire([Subject(KEY, Limits(rpm=5))], 90)  # tokens no longer limited
        assert v.allowed
        assert set(v.headers) == {
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        }
        v = await rl.acquire([Subject(KEY, Limits(rpm=5, tpm=100))], 90)
        assert v.allowed
        assert v.headers["x-ratelimit-remaining-requests"] == "2"
        assert v.headers["x-ratelimit-remaining-tokens"] == "10"

    with_limiter(redis_url, scenario)


def test_the_script_is_loaded_again_after_a_flush(redis_url: str) -> None:
    key = [Subject(KEY, Limits(rpm=5))]

    async def scenario(rl: RedisRateLimiter) -> None:
        assert (await rl.acquire(key, 0)).allowed
        admin = aioredis.Redis(port=urlsplit(redis_url).port or 6379)
        try:
            await admin.script_flush()
        finally:
            await admin.aclose()
        v = await rl.acquire(key, 0)
        assert v.allowed
        assert v.headers["x-ratelimit-remaining-requests"] == "3"

    with_limiter(redis_url, scenario)


def test_redis_and_local_agree(redis_url: str) -> None:
    key = Subject(KEY, Limits(rpm=5, tpm=1000))
    tenant = Subject(TENANT, Limits(rpm=8, tpm=1500))
    both, k, t = [key, tenant], [key], [tenant]
    script: list[tuple[list[Subject], int] | tuple[list[Subject], int, int]] = [
        (both, 300),
        (both, 300),
        (both, 500),
        (both, 300, 100),
        (both, 500),
        (t, 500),
        (k, 50),
        (k, 2000),
        (k, 10),
        (k, 10),
        (k, 10, 400),
        (t, 50),
        (both, 1),
    ]

    async def play(rl: RateLimiter) -> list[tuple[bool, str | None, str | None, list[int]]]:
        out: list[tuple[bool, str | None, str | None, list[int]]] = []
        for step in script:
            if len(step) == 3:
                await rl.settle(step[0], step[1], step[2])
                continue
            v = await rl.acquire(step[0], step[1])
            remaining = [int(v.headers[h]) for h in sorted(v.headers) if "remaining" in h]
            out.append((v.allowed, v.limited_by, v.dimension, remaining))
        return out

    async def local() -> list[tuple[bool, str | None, str | None, list[int]]]:
        rl = LocalRateLimiter()
        try:
            return await play(rl)
        finally:
            await rl.close()

    expected = asyncio.run(local())
    got = with_limiter(redis_url, play)
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    for g, e in zip(got, expected, strict=True):  # refill between calls may add one unit
        assert all(abs(gr - er) <= 1 for gr, er in zip(g[3], e[3], strict=True))
    assert [e[0] for e in expected].count(False) == 4


CHILD = """
import asyncio, sys, time
from suanli.gateway.ratelimit import Limits, Subject
from suanli.gateway.ratelimit_redis import RedisRateLimiter

async def main(url: str, prefix: str, duration: float) -> None:
    rl = RedisRateLimiter(url, prefix=prefix)
    subjects = [Subject("key:race", Limits(rpm=50))]
    await rl.acquire([Subject("key:warm-up", Limits(rpm=1))], 0)  # connect, load the script
    print("ready", flush=True)
    sys.stdin.readline()  # the parent says go to both at once
    admitted = attempts = 0
    until = time.monotonic() + duration

    async def hammer() -> None:
        nonlocal admitted, attempts
        while time.monotonic() < until:
            verdict = await rl.acquire(subjects, 0)
            attempts += 1
            admitted += verdict.allowed

    await asyncio.gather(*(hammer() for _ in range(4)))
    await rl.close()
    print(admitted, attempts, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


def test_two_processes_share_one_limit_exactly(redis_url: str) -> None:
    prefix = new_prefix()
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, redis_url, prefix, "0.5"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", "a child did not start"
        started = time.monotonic()
        for child in children:  # go, to both before waiting for either
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=30)
            assert child.returncode == 0, err
            results.append([int(n) for n in out.split()])
        window = time.monotonic() - started  # every admission of the race key happened in it
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    total = sum(admitted for admitted, _ in results)
    assert all(attempts > 50 for _, attempts in results), results  # both really hammered
    assert 50 <= total <= 50 + 50 * window / 60, (results, window)


def test_an_unreachable_redis_fails_fast() -> None:
    nobody = free_port()

    async def scenario(rl: RedisRateLimiter) -> float:
        started = time.monotonic()
        with pytest.raises(RateLimiterUnavailable, match="unavailable"):
            await rl.acquire([Subject(KEY, Limits(rpm=5))], 0)
        return time.monotonic() - started

    elapsed = with_limiter(f"redis://127.0.0.1:{nobody}/0", scenario)
    assert elapsed < 1.5


def test_a_silent_redis_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]

        async def scenario(rl: RedisRateLimiter) -> float:
            started = time.monotonic()
            with pytest.raises(RateLimiterUnavailable):
                await rl.acquire([Subject(KEY, Limits(rpm=5))], 0)
            return time.monotonic() - started

        elapsed = with_limiter(f"redis://127.0.0.1:{port}/0", scenario)
    assert 0.4 <= elapsed < 1.5


def test_settlement_without_redis_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(rl: RedisRateLimiter) -> None:
        await rl.settle([Subject(KEY, Limits(tpm=100))], 10, 50)

    with caplog.at_level(logging.WARNING, logger="suanli.gateway.ratelimit_redis"):
        with_limiter(f"redis://127.0.0.1:{free_port()}/0", scenario)
    assert "settlement dropped" in caplog.text


def test_the_factory_picks_redis_with_a_url() -> None:
    rl = make_rate_limiter("redis://127.0.0.1:1/0")
    assert isinstance(rl, RedisRateLimiter)
    assert ReExported is RedisRateLimiter
    asyncio.run(rl.close())
