"""The in-process rate limiter, driven by a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.gateway.ratelimit import (
    Limits,
    LocalRateLimiter,
    Subject,
    Verdict,
    format_duration,
    make_rate_limiter,
)

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter() -> tuple[LocalRateLimiter, Clock]:
    clock = Clock()
    return LocalRateLimiter(clock=clock), clock


def acquire(rl: LocalRateLimiter, subjects: list[Subject], tokens: int = 0) -> Verdict:
    return run(rl.acquire(subjects, tokens))


def settle(rl: LocalRateLimiter, subjects: list[Subject], reserved: int, actual: int) -> None:
    run(rl.settle(subjects, reserved, actual))


KEY = "key:42"
TENANT = "tenant:7"


def test_rpm_exhausted_is_refused_with_headers_and_retry_after() -> None:
    rl, _ = limiter()
    key = [Subject(KEY, Limits(rpm=3))]
    for remaining, reset in [("2", "20s"), ("1", "40s"), ("0", "1m0s")]:
        v = acquire(rl, key)
        assert v.allowed
        assert v.headers == {
            "x-ratelimit-limit-requests": "3",
            "x-ratelimit-remaining-requests": remaining,
            "x-ratelimit-reset-requests": reset,
        }
        assert (v.retry_after_s, v.limited_by, v.dimension) == (None, None, None)
    v = acquire(rl, key)
    assert not v.allowed
    assert (v.limited_by, v.dimension) == (KEY, "requests")
    assert v.retry_after_s == pytest.approx(20.0)
    assert v.headers["x-ratelimit-remaining-requests"] == "0"
    assert v.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert "x-ratelimit-limit-tokens" not in v.headers


def test_buckets_refill_continuously_up_to_the_limit() -> None:
    rl, clock = limiter()
    key = [Subject(KEY, Limits(rpm=6))]
    assert all(acquire(rl, key).allowed for _ in range(6))
    assert acquire(rl, key).retry_after_s == pytest.approx(10.0)
    clock.now += 5.0
    v = acquire(rl, key)
    assert not v.allowed
    assert v.retry_after_s == pytest.approx(5.0)
    clock.now += v.retry_after_s or 0.0  # waiting exactly as told is enough
    assert acquire(rl, key).allowed
    # a long idle time fills the bucket to the limit and no further
    clock.now += 3600.0
    assert sum(acquire(rl, key).allowed for _ in range(20)) == 6


def test_tokens_reserved_then_given_back_or_taken_at_settlement() -> None:
    rl, clock = limiter()
    key = [Subject(KEY, Limits(tpm=1000))]
    v = acquire(rl, key, 600)
    assert v.allowed
    assert v.headers == {
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "400",
        "x-ratelimit-reset-tokens": "36s",
    }
    v = acquire(rl, key, 500)
    assert not v.allowed
    assert (v.limited_by, v.dimension) == (KEY, "tokens")
    assert v.retry_after_s == pytest.approx(6.0)  # 100 tokens at 1000/60 per second
    settle(rl, key, 600, 200)  # 400 unused: back in the bucket
    v = acquire(rl, key, 500)
    assert v.allowed
    assert v.headers["x-ratelimit-remaining-tokens"] == "300"
    settle(rl, key, 500, 900)  # 400 more than reserved: taken now, leaving a debt of 100
    v = acquire(rl, key, 1)
    assert not v.allowed
    assert v.headers["x-ratelimit-remaining-tokens"] == "0"
    assert v.headers["x-ratelimit-reset-tokens"] == "1m6s"
    assert v.retry_after_s == pytest.approx(101 * 60 / 1000)
    clock.now += 101 * 60 / 1000
    assert acquire(rl, key, 1).allowed


def test_settlement_never_fills_a_bucket_past_its_limit() -> None:
    rl, _ = limiter()
    key = [Subject(KEY, Limits(tpm=1000))]
    assert acquire(rl, key, 100).allowed
    settle(rl, key, 5000, 0)
    v = acquire(rl, key, 1000)
    assert v.allowed
    assert v.headers["x-ratelimit-remaining-tokens"] == "0"


def test_settlement_of_an_unknown_or_unlimited_subject_is_harmless() -> None:
    rl, _ = limiter()
    settle(rl, [Subject(KEY, Limits())], 10, 500)
    assert rl.held_buckets() == 0
    settle(rl, [Subject(KEY, Limits(tpm=100))], 10, 10)
    assert rl.held_buckets() == 0
    settle(rl, [Subject(KEY, Limits(tpm=100))], 10, 60)  # a debt on a bucket never used
    assert acquire(rl, [Subject(KEY, Limits(tpm=100))], 51).retry_after_s == pytest.approx(0.6)


def test_a_request_larger_than_the_tpm_limit_never_fits() -> None:
    rl, _ = limiter()
    subjects = [Subject(KEY, Limits(rpm=10, tpm=100_000)), Subject(TENANT, Limits(tpm=4096))]
    v = acquire(rl, subjects, 5000)
    assert not v.allowed
    assert v.retry_after_s is None
    assert (v.limited_by, v.dimension) == (TENANT, "tokens")
    assert v.headers["x-ratelimit-limit-tokens"] == "4096"
    assert v.headers["x-ratelimit-remaining-requests"] == "10"  # nothing was taken


def test_a_zero_limit_refuses_everything_for_good() -> None:
    rl, _ = limiter()
    v = acquire(rl, [Subject(KEY, Limits(rpm=0))])
    assert (v.allowed, v.retry_after_s, v.dimension) == (False, None, "requests")
    assert v.headers["x-ratelimit-reset-requests"] == "0s"


def test_all_or_nothing_across_key_and_tenant() -> None:
    rl, _ = limiter()
    key = Subject(KEY, Limits(rpm=100, tpm=10_000))
    tenant = Subject(TENANT, Limits(rpm=100, tpm=1000))
    assert acquire(rl, [key, tenant], 800).allowed
    v = acquire(rl, [key, tenant], 800)
    assert not v.allowed
    assert (v.limited_by, v.dimension) == (TENANT, "tokens")
    # the key gave nothing for the refused request: only the first one is on its buckets
    v = acquire(rl, [key], 0)
    assert v.headers["x-ratelimit-remaining-requests"] == "98"
    assert v.headers["x-ratelimit-remaining-tokens"] == "9200"

    # the tenant refusing on requests leaves the key's token bucket alone as well
    rl, _ = limiter()
    tenant = Subject(TENANT, Limits(rpm=1))
    assert acquire(rl, [key, tenant], 500).allowed
    v = acquire(rl, [key, tenant], 500)
    assert (v.allowed, v.limited_by, v.dimension) == (False, TENANT, "requests")
    assert acquire(rl, [key], 0).headers["x-ratelimit-remaining-tokens"] == "9500"


def test_headers_describe_the_most_constraining_subject() -> None:
    rl, _ = limiter()
    key = Subject(KEY, Limits(rpm=5, tpm=1000))
    tenant = Subject(TENANT, Limits(rpm=100, tpm=500))
    v = acquire(rl, [key, tenant], 100)
    assert v.headers == {
        "x-ratelimit-limit-requests": "5",  # the key: 4 left
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "12s",
        "x-ratelimit-limit-tokens": "500",  # the tenant: 400 left
        "x-ratelimit-remaining-tokens": "400",
        "x-ratelimit-reset-tokens": "12s",
    }


def test_the_longest_wait_is_the_one_reported() -> None:
    rl, _ = limiter()
    key = Subject(KEY, Limits(rpm=1))  # refills in 60 s
    tenant = Subject(TENANT, Limits(rpm=60))  # refills in 1 s
    assert all(acquire(rl, [tenant]).allowed for _ in range(59))
    assert acquire(rl, [key, tenant]).allowed
    v = acquire(rl, [tenant, key])
    assert (v.limited_by, v.dimension) == (KEY, "requests")
    assert v.retry_after_s == pytest.approx(60.0)
    assert v.headers["x-ratelimit-limit-requests"] == "1"


def test_unlimited_subjects_cost_nothing() -> None:
    rl, _ = limiter()
    free = Subject(KEY, Limits())
    for _ in range(50):
        v = acquire(rl, [free], 10**9)
        assert v == Verdict(True, {}, None, None, None)
    assert rl.held_buckets() == 0
    v = acquire(rl, [free, Subject(TENANT, Limits(tpm=100))], 10)
    assert v.headers == {
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "90",
        "x-ratelimit-reset-tokens": "6s",
    }
    assert acquire(rl, [], 5).allowed


def test_a_lowered_limit_applies_at_once() -> None:
    rl, _ = limiter()
    assert acquire(rl, [Subject(KEY, Limits(rpm=100))]).allowed
    lowered = [Subject(KEY, Limits(rpm=3))]
    assert sum(acquire(rl, lowered).allowed for _ in range(10)) == 3


def test_idle_buckets_are_forgotten_but_debts_are_not() -> None:
    rl, clock = limiter()
    assert acquire(rl, [Subject(KEY, Limits(rpm=10, tpm=1000))], 10).allowed
    settle(rl, [Subject(TENANT, Limits(tpm=60))], 0, 600)  # 10 minutes of debt
    assert rl.held_buckets() == 3
    clock.now += 61.0
    acquire(rl, [], 0)
    assert rl.held_buckets() == 1
    clock.now += 600.0
    acquire(rl, [], 0)
    assert rl.held_buckets() == 0


def test_bad_arguments_are_rejected() -> None:
    rl, _ = limiter()
    with pytest.raises(ValueError, match="negative"):
        acquire(rl, [], -1)
    with pytest.raises(ValueError, match="negative"):
        Limits(rpm=-1)
    with pytest.raises(ValueError, match="negative"):
        Limits(tpm=-5)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (-3.0, "0s"),
        (0.0001, "1ms"),
        (0.02, "20ms"),
        (0.0201, "21ms"),
        (0.999, "999ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (8.64, "8.64s"),
        (59.9999, "1m0s"),
        (61.25, "1m1.25s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
        (3723.004, "1h2m3.004s"),
    ],
)
def test_durations_are_written_as_openai_does(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_the_factory_picks_the_local_limiter_without_a_url() -> None:
    rl = make_rate_limiter(None)
    assert isinstance(rl, LocalRateLimiter)
    run(rl.close())


steps = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=20.0)),  # time passing
        st.sampled_from(["key", "tenant", "both"]),  # who asks
        st.integers(min_value=0, max_value=400),  # tokens
        st.booleans(),  # after a refusal, wait as told and retry
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    rpm=st.integers(min_value=1, max_value=30),
    tpm=st.integers(min_value=400, max_value=2000),
    steps=steps,
)
def test_admissions_never_exceed_the_limit_over_any_window(
    rpm: int, tpm: int, steps: list[tuple[float, str, int, bool]]
) -> None:
    """Over any window of T seconds: admitted <= limit + limit * T / 60, per subject and
    dimension; and a refused request that waits its retry_after is then admitted."""
    rl, clock = limiter()
    key = Subject(KEY, Limits(rpm=rpm, tpm=tpm))
    tenant = Subject(TENANT, Limits(rpm=2 * rpm, tpm=tpm // 2))
    who = {"key": [key], "tenant": [tenant], "both": [key, tenant]}
    admitted: dict[str, list[tuple[float, int]]] = {KEY: [], TENANT: []}

    async def play() -> None:
        for dt, asker, tokens, retry in steps:
            clock.now += dt
            subjects = who[asker]
            v = await rl.acquire(subjects, tokens)
            if not v.allowed and retry:
                if v.retry_after_s is None:
                    assert any(tokens > (s.limits.tpm or 0) for s in subjects)
                    continue
                clock.now += v.retry_after_s
                v = await rl.acquire(subjects, tokens)
                assert v.allowed
            if v.allowed:
                for s in subjects:
                    admitted[s.key].append((clock.now, tokens))

    run(play())
    for s in (key, tenant):
        rpm_s, tpm_s = s.limits.rpm or 0, s.limits.tpm or 0
        times = admitted[s.key]
        for i in range(len(times)):
            used = 0
            for j in range(i, len(times)):
                window = times[j][0] - times[i][0]
                used += times[j][1]
                assert j - i + 1 <= rpm_s + rpm_s * window / 60 + 1e-6
                assert used <= tpm_s + tpm_s * window / 60 + 1e-6
