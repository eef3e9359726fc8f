"""Replica routing policies and prompt block keys: pure logic, no clock, no I/O."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.gateway.prefix import chat_prompt_text, prompt_blocks
from suanli.gateway.routing import (
    LeastOutstandingRouter,
    PrefixCacheRouter,
    RoundRobinRouter,
    Router,
    make_router,
)


@dataclass(eq=False)
class Replica:
    id: str
    outstanding: int = 0


@dataclass(frozen=True)
class FrozenReplica:
    id: str
    outstanding: int = 0


def replicas(n: int, loads: list[int] | None = None) -> list[Replica]:
    loads = loads or [0] * n
    return [Replica(f"r{i}", loads[i]) for i in range(n)]


def prompt(tag: str, n: int) -> list[int]:
    """The ``n`` block keys of prompt ``tag``: ``prompt(t, k)`` is a prefix of ``prompt(t, n)``."""
    return prompt_blocks("".join(f"{tag}:{i}:".ljust(64, ".") for i in range(n)), 64)


def picks(router: Router, pool: list[Replica], blocks: list[int], k: int) -> list[str]:
    return [router.choose(pool, blocks).id for _ in range(k)]


# --- make_router -----------------------------------------------------------------------------


def test_make_router_names_and_options() -> None:
    assert isinstance(make_router("round_robin"), RoundRobinRouter)
    assert isinstance(make_router("least_outstanding"), LeastOutstandingRouter)
    router = make_router(
        "prefix_cache",
        cache_threshold=0.6,
        balance_abs_threshold=3,
        balance_rel_threshold=2.0,
        capacity_blocks=128,
    )
    assert isinstance(router, PrefixCacheRouter)
    assert router.name == "prefix_cache"
    assert (router.cache_threshold, router.balance_abs_threshold) == (0.6, 3)
    assert (router.balance_rel_threshold, router.capacity_blocks) == (2.0, 128)
    for name in ("round_robin", "least_outstanding", "prefix_cache"):
        assert make_router(name).name == name


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("random", {}),
        ("round_robin", {"cache_threshold": 0.5}),
        ("prefix_cache", {"threshold": 0.5}),
        ("prefix_cache", {"capacity_blocks": 10.5}),
        ("prefix_cache", {"capacity_blocks": 1}),
        ("prefix_cache", {"cache_threshold": 1.5}),
        ("prefix_cache", {"balance_rel_threshold": 0.5}),
        ("prefix_cache", {"balance_abs_threshold": -1}),
    ],
)
def test_make_router_rejects_bad_names_and_options(name: str, options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        make_router(name, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["round_robin", "least_outstanding", "prefix_cache"])
def test_no_replicas_is_an_error(name: str) -> None:
    router = make_router(name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one replica"):
        router.choose([], [1, 2])


@pytest.mark.parametrize("name", ["round_robin", "least_outstanding", "prefix_cache"])
def test_read_only_replicas_are_accepted(name: str) -> None:
    router = make_router(name)  # type: ignore[arg-type]
    pool = [FrozenReplica("a", 2), FrozenReplica("b", 1)]
    assert router.choose(pool, prompt("x", 3)) in pool


# --- round_robin -----------------------------------------------------------------------------


def test_round_robin_cycles_in_order() -> None:
    pool = replicas(3, [5, 0, 9])
    assert picks(RoundRobinRouter(), pool, [], 7) == ["r0", "r1", "r2", "r0", "r1", "r2", "r0"]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 12), k=st.integers(0, 200))
def test_round_robin_is_balanced_to_within_one(n: int, k: int) -> None:
    pool = replicas(n)
    counts = Counter(picks(RoundRobinRouter(), pool, [], k))
    per_replica = [counts[r.id] for r in pool]
    assert max(per_replica) - min(per_replica) <= 1
    assert sum(per_replica) == k


# --- least_outstanding -----------------------------------------------------------------------


def test_least_outstanding_takes_the_least_loaded() -> None:
    pool = replicas(4, [3, 1, 2, 5])
    assert picks(LeastOutstandingRouter(), pool, [], 3) == ["r1", "r1", "r1"]


def test_least_outstanding_breaks_ties_round_robin() -> None:
    pool = replicas(4, [1, 0, 0, 0])
    assert picks(LeastOutstandingRouter(), pool, [], 6) == ["r1", "r2", "r3", "r1", "r2", "r3"]


def test_least_outstanding_follows_changing_loads() -> None:
    router = LeastOutstandingRouter()
    pool = replicas(3)
    for _ in range(30):  # each pick adds a request in flight, as the gateway does
        router.choose(pool, []).outstanding += 1
    assert [r.outstanding for r in pool] == [10, 10, 10]


@settings(max_examples=100, deadline=None)
@given(loads=st.lists(st.integers(0, 5), min_size=1, max_size=10), calls=st.integers(1, 5))
def test_least_outstanding_always_returns_a_minimum(loads: list[int], calls: int) -> None:
    router = LeastOutstandingRouter()
    pool = replicas(len(loads), loads)
    for _ in range(calls):
        assert router.choose(pool, []).outstanding == min(loads)


# --- prefix_cache: the policy ----------------------------------------------------------------


def test_prefix_cache_sticks_to_the_replica_holding_the_prefix() -> None:
    router = PrefixCacheRouter()
    pool = replicas(4)
    first = router.choose(pool, prompt("a", 10))
    # the same conversation, one turn further: its first 10 blocks are on `first`
    assert picks(router, pool, prompt("a", 14), 5) == [first.id] * 5


def test_prefix_cache_spreads_new_prefixes_to_the_emptiest_record() -> None:
    router = PrefixCacheRouter()
    pool = replicas(3)
    chosen = [router.choose(pool, prompt(tag, 10)).id for tag in "abc"]
    assert sorted(chosen) == ["r0", "r1", "r2"]
    # a bigger prompt goes to r0; the next new prefix avoids r0, now the fullest record
    router.choose(pool, prompt("d", 40))
    assert router.record_size("r0") == 50
    assert router.choose(pool, prompt("e", 10)).id != "r0"


def test_prefix_cache_emptiest_record_ties_go_to_least_outstanding() -> None:
    router = PrefixCacheRouter()
    pool = replicas(3, [4, 1, 2])
    assert router.choose(pool, prompt("a", 5)).id == "r1"


def test_prefix_cache_threshold_is_inclusive() -> None:
    router = PrefixCacheRouter(cache_threshold=0.5)
    pool = replicas(2)
    assert router.choose(pool, prompt("a", 4)).id == "r0"
    # 4 of 8 blocks matched on r0: 0.5 >= 0.5, affinity wins although r1's record is empty
    assert router.choose(pool, prompt("a", 8)).id == "r0"
    # 8 of 17 matched on r0: below the threshold, so the emptiest record (r1) takes it
    assert router.choose(pool, prompt("a", 17)).id == "r1"


def test_prefix_cache_longest_match_wins() -> None:
    router = PrefixCacheRouter(cache_threshold=0.1)
    pool = replicas(3)
    assert router.choose(pool, prompt("a", 3)).id == "r0"
    assert router.choose(pool, prompt("b", 30)).id == "r1"
    assert router.choose(pool[2:], prompt("a", 6)).id == "r2"
    blocks = prompt("a", 10)
    assert [router.matched_blocks(r.id, blocks) for r in pool] == [3, 0, 6]
    assert router.choose(pool, blocks).id == "r2"


def test_prefix_cache_equal_matches_go_to_least_outstanding() -> None:
    router = PrefixCacheRouter()
    pool = replicas(3)
    shared = prompt("s", 6)
    for replica in pool:  # every replica holds the prefix
        router.choose([replica], shared)
    pool[0].outstanding, pool[1].outstanding, pool[2].outstanding = 3, 1, 2
    assert router.choose(pool, shared).id == "r1"


@pytest.mark.parametrize(
    ("loads", "expected"),
    [
        ([10, 6, 7], "r0"),  # max - min = 4, not > 4: balanced, the prefix's replica
        ([10, 5, 7], "r1"),  # 5 > 4 and 10 > 1.5 * 5: imbalanced, least outstanding
        ([20, 14, 15], "r0"),  # 6 > 4 but 20 < 1.5 * 14: balanced
        ([6, 0, 3], "r1"),  # 6 > 4 and 6 > 0: imbalanced
        ([4, 0, 0], "r0"),  # 4 > 0 but 4 is not > 4: balanced
    ],
)
def test_prefix_cache_imbalance_needs_both_thresholds(loads: list[int], expected: str) -> None:
    router = PrefixCacheRouter(balance_abs_threshold=4, balance_rel_threshold=1.5)
    pool = replicas(3)
    assert router.choose(pool, prompt("a", 10)).id == "r0"
    for replica, load in zip(pool, loads, strict=True):
        replica.outstanding = load
    assert router.choose(pool, prompt("a", 12)).id == expected


def test_prefix_cache_prompt_without_blocks_goes_to_least_outstanding() -> None:
    router = PrefixCacheRouter()
    pool = replicas(3, [2, 1, 1])
    assert picks(router, pool, [], 4) == ["r1", "r2", "r1", "r2"]
    assert all(router.record_size(r.id) == 0 for r in pool)


def test_prefix_cache_records_on_the_replica_chosen_for_balance_too() -> None:
    router = PrefixCacheRouter(balance_abs_threshold=0, balance_rel_threshold=1.0)
    pool = replicas(2, [5, 0])
    blocks = prompt("a", 4)
    assert router.choose(pool, blocks).id == "r1"
    assert router.matched_blocks("r1", blocks) == 4


# --- prefix_cache: the record ----------------------------------------------------------------


def test_prefix_cache_evicts_least_recently_used_blocks() -> None:
    router = PrefixCacheRouter(capacity_blocks=8)  # two generations of 4 blocks
    only = replicas(1)
    a, b, c = prompt("a", 2), prompt("b", 2), prompt("c", 2)
    for blocks in (a, b, c):
        router.choose(only, blocks)
    assert [router.matched_blocks("r0", x) for x in (a, b, c)] == [2, 2, 2]
    router.choose(only, a)  # a is used again; b is now the least recently used
    router.choose(only, prompt("d", 2))
    assert router.matched_blocks("r0", b) == 0
    assert router.matched_blocks("r0", a) == 2
    assert router.matched_blocks("r0", c) == 2
    assert router.record_size("r0") == 8  # full, as an LRU of 8 blocks would be


def test_prefix_cache_record_is_bounded() -> None:
    router = PrefixCacheRouter(capacity_blocks=64)
    only = replicas(1)
    for i in range(200):
        router.choose(only, prompt(f"p{i}", 1 + i % 7))
        record = router._records["r0"]
        assert len(record.young) + len(record.old) <= 64 + 7
    assert router.record_size("r0") == 64


def test_prefix_cache_keeps_the_head_of_a_prompt_longer_than_the_record() -> None:
    router = PrefixCacheRouter(capacity_blocks=16)
    only = replicas(1)
    blocks = prompt("a", 40)
    router.choose(only, blocks)
    assert router.matched_blocks("r0", blocks) == 8  # half the capacity: the first 8 blocks


def test_forget_drops_the_replica_record() -> None:
    router = PrefixCacheRouter()
    pool = replicas(2)
    blocks = prompt("a", 6)
    assert router.choose(pool, blocks).id == "r0"
    router.forget("r0")
    router.forget("never-seen")
    assert router.record_size("r0") == 0
    assert router.matched_blocks("r0", blocks) == 0
    # without the record nothing pulls the prompt back to r0: the emptiest record is r0 or r1,
    # and the round-robin tie-break now starts after r0
    assert router.choose(pool, blocks).id == "r1"
    for name in ("round_robin", "least_outstanding"):
        make_router(name).forget("r0")


# Prompts drawn from a small tree of conversations: many shared prefixes, chained keys.
_tree_prompts = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 12)), min_size=1, max_size=40
)


def _tree_prompt(trunk: int, branch: int, n: int) -> list[int]:
    text = "".join(f"{trunk:02}{'x' * 62}" if i < 3 else f"{branch}{i:063}" for i in range(n))
    return prompt_blocks(text, 64)


@settings(max_examples=60, deadline=None)
@given(
    requests=_tree_prompts,
    loads=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    capacity=st.integers(2, 64),
    gone=st.sets(st.integers(0, 7), max_size=3),
)
def test_prefix_cache_returns_a_member_and_matches_like_a_linear_scan(
    requests: list[tuple[int, int, int]], loads: list[int], capacity: int, gone: set[int]
) -> None:
    router = PrefixCacheRouter(capacity_blocks=capacity, balance_abs_threshold=8)
    pool = replicas(len(loads), loads)
    for step, (trunk, branch, n) in enumerate(requests):
        blocks = _tree_prompt(trunk, branch, n)
        chosen = router.choose(pool, blocks)
        assert any(chosen is r for r in pool)
        chosen.outstanding += step % 2
        if step in gone:
            router.forget(pool[step % len(pool)].id)
        for replica in pool:
            record = router._records.get(replica.id)
            held: set[int] = set()
            if record is not None:
                held = record.young.keys() | record.old.keys()
            linear = 0
            while linear < len(blocks) and blocks[linear] in held:
                linear += 1
            assert router.matched_blocks(replica.id, blocks) == linear
            # prefix-closed: nothing recorded after the first block that is not
            assert not any(b in held for b in blocks[linear:])


@settings(max_examples=60, deadline=None)
@given(
    pool_sizes=st.lists(st.integers(1, 6), min_size=1, max_size=20),
    n_blocks=st.integers(0, 20),
    loads=st.lists(st.integers(0, 100), min_size=6, max_size=6),
)
def test_prefix_cache_follows_a_changing_replica_list(
    pool_sizes: list[int], n_blocks: int, loads: list[int]
) -> None:
    router = make_router("prefix_cache", capacity_blocks=32)
    everyone = replicas(6, loads)
    for i, size in enumerate(pool_sizes):
        pool = everyone[i % 3 : i % 3 + size]
        assert router.choose(pool, prompt("c", n_blocks)) in pool


# --- prompt keys -----------------------------------------------------------------------------


def test_prompt_blocks_count_only_full_blocks() -> None:
    assert prompt_blocks("") == []
    assert prompt_blocks("x" * 63) == []
    assert len(prompt_blocks("x" * 64)) == 1
    assert len(prompt_blocks("x" * 200)) == 3
    assert len(prompt_blocks("x" * 200, block_chars=10)) == 20
    assert prompt_blocks("x" * 128)[:1] == prompt_blocks("x" * 64)
    with pytest.raises(ValueError, match="block_chars"):
        prompt_blocks("abc", block_chars=0)


def test_prompt_blocks_are_chained() -> None:
    same_text = "y" * 64
    keys = prompt_blocks(same_text * 3)
    assert len(set(keys)) == 3  # equal blocks at different depths key differently
    changed_first = prompt_blocks("z" + same_text[1:] + same_text * 2)
    assert not set(keys) & set(changed_first)  # a change early changes every later key
    assert prompt_blocks(same_text * 3) == keys  # deterministic within a process


@settings(max_examples=100, deadline=None)
@given(
    common=st.text(max_size=300),
    left=st.text(min_size=1, max_size=200),
    right=st.text(min_size=1, max_size=200),
    block_chars=st.integers(1, 40),
)
def test_prompts_share_exactly_their_common_full_blocks(
    common: str, left: str, right: str, block_chars: int
) -> None:
    a, b = common + left, common + right
    shared = 0  # full blocks of a and b that are equal as text
    while (shared + 1) * block_chars <= min(len(a), len(b)) and (
        a[shared * block_chars : (shared + 1) * block_chars]
        == b[shared * block_chars : (shared + 1) * block_chars]
    ):
        shared += 1
    ka, kb = prompt_blocks(a, block_chars), prompt_blocks(b, block_chars)
    assert ka[:shared] == kb[:shared]
    assert all(x != y for x, y in zip(ka[shared:], kb[shared:], strict=False))


def test_chat_prompt_text_renders_prefixes_as_prefixes() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f"}}],
        },
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
        {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
    ]
    full = chat_prompt_text(messages)
    for k in range(len(messages)):
        assert full.startswith(chat_prompt_text(messages[:k]))
    for needle in ("You are terse.", "ann", '"name":"f"', "c1", "and now?"):
        assert needle in full


def test_chat_prompt_text_keys_what_the_model_sees() -> None:
    as_text = [{"role": "user", "content": "hello"}]
    as_parts = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    assert chat_prompt_text(as_text) == chat_prompt_text(as_parts)
    assert chat_prompt_text(as_text) != chat_prompt_text([{"role": "system", "content": "hello"}])
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    other = {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}}
    one = chat_prompt_text([{"role": "user", "content": [image, {"type": "text", "text": "?"}]}])
    two = chat_prompt_text([{"role": "user", "content": [other, {"type": "text", "text": "?"}]}])
    assert one != two
    # message boundaries are part of the key: one message of "ab" is not two of "a" and "b"
    split = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert chat_prompt_text(split) != chat_prompt_text([{"role": "user", "content": "ab"}])
    assert chat_prompt_text([]) == ""
