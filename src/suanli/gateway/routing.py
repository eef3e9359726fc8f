"""Replica routing policies of the gateway: which replica of a deployment serves a request.

Pure logic, no I/O, no clock. The gateway keeps one router per deployment, tells it the
current replicas (with the number of requests it has in flight to each) and the prompt's prefix
block keys (:func:`suanli.gateway.prefix.prompt_blocks`), and gets one replica back.

Policies (:func:`make_router`):

``round_robin``
    Cycles through the replicas in the order given.
``least_outstanding``
    The replica with the fewest requests in flight; ties are broken round-robin (the scan
    starts after the replica chosen last), so equal replicas take turns.
``prefix_cache``
    Cache-aware routing after SGLang's router, over block keys instead of characters. The router
    keeps, per replica, an approximate record of the prefix blocks it has sent there (an LRU set
    of at most ``capacity_blocks`` keys) and, per request:

    1. if the load is imbalanced, ``max - min > balance_abs_threshold`` and
       ``max > balance_rel_threshold * min`` over the replicas' ``outstanding``, it takes the
       least outstanding replica;
    2. else, if some replica's record matches a leading run of ``m >= 1`` of the prompt's ``n``
       blocks with ``m / n >= cache_threshold``, the replica with the longest match (ties: least
       outstanding, then round-robin);
    3. else the replica with the most free cache capacity, i.e. the smallest record (ties:
       least outstanding, then round-robin): new prefixes spread over the cache space.

    A prompt without blocks (shorter than one block) caches nothing, so it goes to the least
    outstanding replica. The request's blocks are then recorded on the chosen replica, whichever
    rule chose it. Replicas the router has not seen have an empty record.

The record. Per replica, two generations of keys (``_Record``): blocks go into the young one, and
when it holds half the capacity it becomes the old one and the previous old one is dropped.
Least recently used blocks thus go first, a generation at a time: a block stays recorded for at
least half the capacity's worth of later insertions after its last use, never for more than
the whole capacity. An exact LRU costs a Python-level operation per block and request; this
costs one bulk ``dict.update``, which is what keeps ``choose`` cheap. The record's size (rule 3)
is the one an exact LRU would have: the blocks newly added to it, capped at the capacity.

Matching. Keys are chained (a key identifies the whole prefix up to its block), and a prompt's
blocks are always recorded together in one generation, so each generation, and therefore the
record, is *prefix-closed*: whenever a key is recorded, so are all the keys before it in its
prompt. Membership along a prompt's blocks is monotone (recorded, ..., recorded, not, ...,
not), so the longest match is found by binary search, O(log n) lookups, not O(n); and once one
replica matches ``m`` blocks, another one needs a single lookup (block ``m - 1``) to show it
cannot beat it. Keys that are not chained make the match approximate, never an error.

Defaults (``make_router("prefix_cache")``): ``cache_threshold=0.3``, ``balance_abs_threshold=32``,
``balance_rel_threshold=1.5``, ``capacity_blocks=2**16``. The thresholds were tuned on a replay
of a real multi-turn conversation trace against simulated replicas (``bench/routing_prefix.py``):
a lower threshold keeps more conversations with their cache, and an absolute threshold of about
one replica's batch (32 requests) leaves affinity alone in normal load while still catching a
replica that falls a whole batch behind. ``capacity_blocks`` of 64-character blocks is about a
million tokens per replica, twice the KV budget of an 8B-class model on one 80 GB GPU: the
record should remember a little longer than the cache does, because a replica that evicted the
tail of a conversation usually still holds its head (the bench: a record as small as the cache
loses a fifth of the hits).

Routers are not thread-safe: one router is driven from one event loop (the gateway's), which is
also where ``outstanding`` is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Final, Literal, Protocol, Self, TypeVar

__all__ = [
    "DEFAULT_BALANCE_ABS_THRESHOLD",
    "DEFAULT_BALANCE_REL_THRESHOLD",
    "DEFAULT_CACHE_THRESHOLD",
    "DEFAULT_CAPACITY_BLOCKS",
    "LeastOutstandingRouter",
    "PrefixCacheRouter",
    "ReplicaLoad",
    "RoundRobinRouter",
    "Router",
    "RouterName",
    "make_router",
]

RouterName = Literal["round_robin", "least_outstanding", "prefix_cache"]

DEFAULT_CACHE_THRESHOLD: Final = 0.3
DEFAULT_BALANCE_ABS_THRESHOLD: Final = 32
DEFAULT_BALANCE_REL_THRESHOLD: Final = 1.5
DEFAULT_CAPACITY_BLOCKS: Final = 2**16


class ReplicaLoad(Protocol):
    """What a router sees of a replica (read-only: plain attributes satisfy it too)."""

    @property
    def id(self) -> str: ...

    @property
    def outstanding(self) -> int:
        """Requests in flight to this replica through this gateway."""
        ...


R = TypeVar("R", bound=ReplicaLoad)


class _Ordered(Protocol):
    def __lt__(self, other: Self, /) -> bool: ...


T = TypeVar("T", bound=_Ordered)


class Router(Protocol):
    """A routing policy. ``choose`` needs a non-empty ``replicas``; ``blocks`` may be empty."""

    name: str

    def choose(self, replicas: Sequence[R], blocks: Sequence[int]) -> R: ...

    def forget(self, replica_id: str) -> None:
        """The replica is gone: drop whatever the router keeps about it."""
        ...


def _no_replicas() -> ValueError:
    return ValueError("choose() needs at least one replica")


def _argmin_from(values: Sequence[T], start: int) -> int:
    """Index of the smallest value; among equal ones, the first at or cyclically after ``start``."""
    best = start
    best_value = values[start]
    for j in range(start + 1, len(values)):
        if values[j] < best_value:
            best, best_value = j, values[j]
    for j in range(start):
        if values[j] < best_value:
            best, best_value = j, values[j]
    return best


class RoundRobinRouter:
    """Cycles through the replicas in the order given."""

    name = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, replicas: Sequence[R], blocks: Sequence[int]) -> R:
        if not replicas:
            raise _no_replicas()
        i = self._next % len(replicas)
        self._next = i + 1
        return replicas[i]

    def forget(self, replica_id: str) -> None:
        return None


class LeastOutstandingRouter:
    """Fewest requests in flight; ties go round-robin."""

    name = "least_outstanding"

    def __init__(self) -> None:
        self._next = 0

    def choose(self, replicas: Sequence[R], blocks: Sequence[int]) -> R:
        if not replicas:
            raise _no_replicas()
        i = _argmin_from([r.outstanding for r in replicas], self._next % len(replicas))
        self._next = i + 1
        return replicas[i]

    def forget(self, replica_id: str) -> None:
        return None


class _Record:
    """The router's idea of one replica's cache: two generations of block keys.

    New and re-used blocks go into ``young``; when ``young`` reaches half the capacity it
    becomes ``old`` and the previous ``old`` is dropped whole. So a block stays recorded for at
    least half the capacity's worth of later insertions after its last use and never for more
    than the whole capacity: least recently used blocks go first, a generation at a time (the
    record never exceeds the capacity by more than one prompt's blocks). Compared with an exact
    LRU (an ``OrderedDict`` with ``move_to_end`` and ``popitem``), every update is one bulk
    ``dict.update`` in C instead of a Python-level operation per block: measured 3 to 4 times
    cheaper for 100-block prompts.
    """

    __slots__ = ("inserted", "old", "young")

    def __init__(self) -> None:
        self.young: dict[int, None] = {}
        self.old: dict[int, None] = {}
        self.inserted = 0  # blocks that were new to ``young`` when added, ever

    def size(self, capacity: int) -> int:
        """The size an exact LRU of ``capacity`` blocks would have: blocks added, up to full.

        Not ``len(young) + len(old)``, which saws between half and whole capacity as the
        generations turn over and would make a just-turned record look emptiest.
        """
        return min(self.inserted, capacity)

    def matched(self, blocks: Sequence[int], known: int = 0) -> int:
        """How many leading ``blocks`` are recorded, given that the first ``known`` are.

        Binary search: the record is prefix-closed, so membership along ``blocks`` is monotone.
        """
        young = self.young
        old = self.old
        n = len(blocks)
        if known == 0:
            if n == 0:
                return 0
            first = blocks[0]
            if first not in young and first not in old:
                return 0
            known = 1
        if known >= n:
            return n
        last = blocks[n - 1]
        if last in young or last in old:
            return n
        lo, hi = known, n - 1  # blocks[lo - 1] is recorded, blocks[hi] is not
        while lo < hi:
            mid = (lo + hi) >> 1
            key = blocks[mid]
            if key in young or key in old:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def add(self, blocks: Sequence[int], matched: int, half_capacity: int) -> None:
        """Record all of ``blocks``, of which the first ``matched`` are known to be recorded.

        All of a prompt's blocks go into ``young`` in one update, so each generation on its own
        is prefix-closed too: if the last matched block is young, all matched blocks are, and
        only the rest needs inserting.
        """
        young = self.young
        before = len(young)
        if matched > 0 and blocks[matched - 1] in young:
            young.update(zip(blocks[matched:half_capacity], repeat(None)))
        else:
            # a prompt longer than half the capacity keeps its head: still prefix-closed
            young.update(zip(blocks[:half_capacity], repeat(None)))
        self.inserted += len(young) - before
        if len(young) >= half_capacity:
            self.old = young
            self.young = {}


def _longest_matches(records: list[_Record | None], blocks: Sequence[int]) -> tuple[int, list[int]]:
    """The longest recorded match of ``blocks`` and the indices of the records that have it.

    Branch and bound: once some record matches ``best`` blocks, a record can only tie or beat it
    if it holds ``blocks[best - 1]``, and beats it only if it also holds ``blocks[best]``, so a
    record that falls short costs one lookup instead of a binary search.
    """
    n = len(blocks)
    best = 0
    holders: list[int] = []
    for j, record in enumerate(records):
        if record is None:
            continue
        if best == 0:
            m = record.matched(blocks)
            if m == 0:
                continue
        else:
            young = record.young
            old = record.old
            key = blocks[best - 1]
            if key not in young and key not in old:
                continue  # matches fewer than best
            if best < n:
                key = blocks[best]
                m = record.matched(blocks, best + 1) if key in young or key in old else best
            else:
                m = best
        if m > best:
            best = m
            holders = [j]
        else:
            holders.append(j)
    return best, holders


class PrefixCacheRouter:
    """Cache-aware routing with a load-balance fallback (see the module docstring)."""

    name = "prefix_cache"

    def __init__(
        self,
        *,
        cache_threshold: float = DEFAULT_CACHE_THRESHOLD,
        balance_abs_threshold: int = DEFAULT_BALANCE_ABS_THRESHOLD,
        balance_rel_threshold: float = DEFAULT_BALANCE_REL_THRESHOLD,
        capacity_blocks: int = DEFAULT_CAPACITY_BLOCKS,
    ) -> None:
        if not 0.0 <= cache_threshold <= 1.0:
            raise ValueError(f"cache_threshold must be within [0, 1], got {cache_threshold}")
        if balance_abs_threshold < 0:
            raise ValueError(f"balance_abs_threshold must be >= 0, got {balance_abs_threshold}")
        if balance_rel_threshold < 1.0:
            raise ValueError(f"balance_rel_threshold must be >= 1, got {balance_rel_threshold}")
        if capacity_blocks < 2:
            raise ValueError(f"capacity_blocks must be >= 2, got {capacity_blocks}")
        self.cache_threshold = cache_threshold
        self.balance_abs_threshold = balance_abs_threshold
        self.balance_rel_threshold = balance_rel_threshold
        self.capacity_blocks = capacity_blocks
        self._half = capacity_blocks // 2
        self._records: dict[str, _Record] = {}
        self._next = 0

    def choose(self, replicas: Sequence[R], blocks: Sequence[int]) -> R:
        n = len(replicas)
        if n == 0:
            raise _no_replicas()
        start = self._next % n
        loads = [r.outstanding for r in replicas]
        lo = min(loads)
        hi = max(loads)
        matched = -1  # leading blocks the chosen replica's record holds; -1: not known
        if not blocks or (
            hi - lo > self.balance_abs_threshold and hi > self.balance_rel_threshold * lo
        ):
            chosen = _argmin_from(loads, start)
        else:
            records = self._records
            found = [records.get(r.id) for r in replicas]
            best, holders = _longest_matches(found, blocks)
            if best and best >= self.cache_threshold * len(blocks):
                # longest match; ties: least outstanding, then round-robin
                if len(holders) == 1:
                    chosen = holders[0]
                else:
                    big = hi + 1
                    tied = [big] * n
                    for j in holders:
                        tied[j] = loads[j]
                    chosen = _argmin_from(tied, start)
                matched = best
            else:
                # most free capacity: smallest record; ties: least outstanding, then round-robin
                capacity = self.capacity_blocks
                keys = [
                    (0 if rec is None else rec.size(capacity), load)
                    for rec, load in zip(found, loads, strict=True)
                ]
                chosen = _argmin_from(keys, start)
                if chosen in holders:
                    matched = best
        self._next = chosen + 1
        replica = replicas[chosen]
        if blocks:
            record = self._records.get(replica.id)
            if record is None:
                record = self._records[replica.id] = _Record()
            record.add(blocks, matched, self._half)
        return replica

    def forget(self, replica_id: str) -> None:
        self._records.pop(replica_id, None)

    def record_size(self, replica_id: str) -> int:
        """How many blocks the router believes ``replica_id`` holds (an estimate, see above)."""
        record = self._records.get(replica_id)
        return 0 if record is None else record.size(self.capacity_blocks)

    def matched_blocks(self, replica_id: str, blocks: Sequence[int]) -> int:
        """How many leading ``blocks`` the router believes ``replica_id`` holds."""
        record = self._records.get(replica_id)
        return 0 if record is None else record.matched(blocks)


def make_router(name: RouterName, **options: float) -> Router:
    """A fresh router of the policy ``name``.

    ``prefix_cache`` takes the options ``cache_threshold``, ``balance_abs_threshold`` (an
    integer), ``balance_rel_threshold`` and ``capacity_blocks`` (an integer); the other policies
    take none. An unknown policy or option raises ``ValueError``.
    """
    if name == "round_robin" or name == "least_outstanding":
        if options:
            raise ValueError(f"router {name!r} takes no options, got {sorted(options)}")
        return RoundRobinRouter() if name == "round_robin" else LeastOutstandingRouter()
    if name == "prefix_cache":
        known = {
            "cache_threshold",
            "balance_abs_threshold",
            "balance_rel_threshold",
            "capacity_blocks",
        }
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown options for router 'prefix_cache': {unknown}")
        return PrefixCacheRouter(
            cache_threshold=float(options.get("cache_threshold", DEFAULT_CACHE_THRESHOLD)),
            balance_abs_threshold=_integer(
                options, "balance_abs_threshold", DEFAULT_BALANCE_ABS_THRESHOLD
            ),
            balance_rel_threshold=float(
                options.get("balance_rel_threshold", DEFAULT_BALANCE_REL_THRESHOLD)
            ),
            capacity_blocks=_integer(options, "capacity_blocks", DEFAULT_CAPACITY_BLOCKS),
        )
    raise ValueError(
        f"unknown router {name!r}; choose round_robin, least_outstanding or prefix_cache"
    )


def _integer(options: dict[str, float], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"{key} must be an integer, got {value!r}")
    return int(value)
