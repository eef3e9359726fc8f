"""Replica routing policies replayed against a real trace: prefix cache hits, balance, TTFT.

Replays the Mooncake conversation trace (JSON lines: ``timestamp`` in ms, ``input_length``,
``output_length``, ``hash_ids``: prefix block ids of 512 tokens, shared by requests with a common
prefix) against ``--replicas`` simulated replicas of one model, once per policy
(``round_robin``, ``least_outstanding``, ``prefix_cache`` from ``suanli.gateway.routing``), all
on the same simulated cluster. The trace's ``hash_ids`` are the block keys the router sees: they
are chained like the gateway's keys (an id always follows the same id), so the router's
prefix-closed record applies as is.

The simulated replica (discrete events, one clock for the cluster):

* a real prefix KV cache: an exact LRU over 512-token blocks, ``--cache-blocks`` of them. A
  request's cached prefix is its leading blocks present in the cache when its prefill starts
  (stop at the first miss); all its blocks are then touched, deepest first, so the LRU evicts
  suffixes before their prefixes, as a radix cache does. Blocks of running requests are not
  pinned and their KV is not subtracted from the budget (a simplification);
* continuous batching approximated by at most ``--batch`` requests in service at once; a
  request waits in FIFO order for a slot;
* prefill is compute-bound, so one prefill runs at a time per replica (FIFO among admitted
  requests) and takes ``--prefill-us`` per *uncached* input token (at least one token is always
  computed); the first token comes out when the prefill ends;
* decode takes ``--decode-ms`` per output token, in parallel with the other requests in the
  batch (per-step slowdown with batch size is not modelled).

Defaults, an 8B-class model with grouped-query attention (32 layers, 8 KV heads of 128, bf16:
128 KiB of KV per token, 64 MiB per 512-token block) on one H100 80 GB:

* ``--cache-blocks 960``: about 60 GiB left for KV after 16 GB of weights and activations and
  runtime overhead, 960 blocks = 491,520 tokens;
* ``--prefill-us 50``: 20,000 prefill tokens/s (16 GFLOP per token at about a third of the bf16
  peak, attention over ~12k-token contexts included);
* ``--decode-ms 20``: one decode step for a batch of ~32 sequences of ~12k tokens reads their
  KV (32 x 12k x 128 KiB, about 50 GB, at 3.35 TB/s: about 15 ms) and the weights (about 5 ms);
* ``--batch 32``: 32 sequences of the trace's mean ~12k tokens fill most of the KV budget;
* ``--speedup 4``: the trace's hour compressed fourfold (about 13.6 requests/s on 8 replicas),
  so that prefill, the part the cache saves, keeps the replicas busy: at 4x a replica without
  cache hits would spend ~100 % of its time prefilling, so queueing, and the router, matter.

Printed per policy: the cache hit rate (cached input blocks / all input blocks), load balance
as busiest replica / mean replica for two measures of work, requests assigned and busy time
(the replica's service time, sum over its requests of prefill + decode seconds), the prefill
seconds alone, mean / p50 / p99 simulated time to first token, and the router's own cost per
``choose`` (wall clock of this process, trace prompts of ~24 blocks). Then the two target
ratios: prefix_cache hit rate / round_robin hit rate (target >= 2) and prefix_cache busiest /
mean load (target <= 1.5).

    python bench/routing_prefix.py                     # the whole trace, a few seconds
    python bench/routing_prefix.py --limit 3000 --json
"""

from __future__ import annotations

import argparse
import heapq
import json
import statistics
import sys
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suanli.gateway.routing import (
    DEFAULT_BALANCE_ABS_THRESHOLD,
    DEFAULT_BALANCE_REL_THRESHOLD,
    DEFAULT_CACHE_THRESHOLD,
    DEFAULT_CAPACITY_BLOCKS,
    RouterName,
    make_router,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRACE = ROOT.parent / "shared" / "data" / "traces" / "mooncake" / "conversation_trace.jsonl"
BLOCK_TOKENS = 512  # the trace's block size
POLICIES: tuple[RouterName, ...] = ("round_robin", "least_outstanding", "prefix_cache")
HIT_RATIO_TARGET = 2.0
BALANCE_TARGET = 1.5

# event kinds, in the order they are handled at equal times
_DECODE_DONE = 0
_PREFILL_DONE = 1
_ARRIVAL = 2


@dataclass(frozen=True, slots=True)
class Request:
    arrival: float  # seconds, after --speedup
    input_length: int
    output_length: int
    blocks: list[int]


@dataclass(frozen=True, slots=True)
class ServiceModel:
    cache_blocks: int
    batch: int
    prefill_s_per_token: float
    decode_s_per_token: float


@dataclass(slots=True)
class Replica:
    """One simulated replica; ``id`` and ``outstanding`` are what the router sees."""

    id: str
    model: ServiceModel
    outstanding: int = 0  # routed here and not finished
    in_service: int = 0  # holding a batch slot
    prefilling: bool = False
    waiting: deque[int] = field(default_factory=deque)  # for a batch slot
    prefill_queue: deque[int] = field(default_factory=deque)
    cache: OrderedDict[int, None] = field(default_factory=OrderedDict)
    requests: int = 0
    busy_s: float = 0.0
    prefill_s: float = 0.0

    def cached_prefix(self, blocks: list[int]) -> int:
        """Leading ``blocks`` in the cache; then touch them all, deepest first (LRU)."""
        cache = self.cache
        hit = 0
        for key in blocks:
            if key not in cache:
                break
            hit += 1
        for key in reversed(blocks[hit:]):
            cache[key] = None
        touch = cache.move_to_end
        for key in reversed(blocks[:hit]):
            touch(key)
        evict = cache.popitem
        for _ in range(len(cache) - self.model.cache_blocks):
            evict(last=False)
        return hit


@dataclass(frozen=True, slots=True)
class PolicyResult:
    policy: str
    requests: int
    hit_rate: float
    requests_max_over_mean: float
    busy_max_over_mean: float
    prefill_max_over_mean: float
    ttft_mean_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    choose_us: float
    makespan_s: float


def load_trace(path: Path, limit: int | None, speedup: float) -> list[Request]:
    requests: list[Request] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            if limit is not None and len(requests) >= limit:
                break
            row = json.loads(line)
            requests.append(
                Request(
                    arrival=float(row["timestamp"]) / 1000.0 / speedup,
                    input_length=int(row["input_length"]),
                    output_length=int(row["output_length"]),
                    blocks=[int(h) for h in row["hash_ids"]],
                )
            )
    requests.sort(key=lambda r: r.arrival)
    return requests


def _ratio(values: list[float]) -> float:
    mean = statistics.fmean(values)
    return max(values) / mean if mean else 0.0


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[rank]


def simulate(
    policy: RouterName,
    requests: list[Request],
    n_replicas: int,
    model: ServiceModel,
    router_options: dict[str, float],
) -> PolicyResult:
    router = make_router(policy, **(router_options if policy == "prefix_cache" else {}))
    replicas = [Replica(id=f"replica-{i}", model=model) for i in range(n_replicas)]
    index = {r.id: k for k, r in enumerate(replicas)}
    where = [0] * len(requests)  # replica index per request
    ttft = [0.0] * len(requests)
    hit_blocks = 0
    total_blocks = 0
    choose_s = 0.0
    events: list[tuple[float, int, int, int]] = [
        (r.arrival, _ARRIVAL, i, i) for i, r in enumerate(requests)
    ]
    heapq.heapify(events)
    seq = len(requests)  # tie-breaker of later events, keeps the heap order deterministic
    now = 0.0

    def start_prefill(replica: Replica, at: float) -> None:
        nonlocal hit_blocks, total_blocks, seq
        i = replica.prefill_queue.popleft()
        request = requests[i]
        hit = replica.cached_prefix(request.blocks)
        hit_blocks += hit
        total_blocks += len(request.blocks)
        uncached = max(1, request.input_length - hit * BLOCK_TOKENS)
        duration = uncached * model.prefill_s_per_token
        replica.prefilling = True
        replica.prefill_s += duration
        replica.busy_s += duration
        seq += 1
        heapq.heappush(events, (at + duration, _PREFILL_DONE, seq, i))

    def admit(replica: Replica, i: int, at: float) -> None:
        replica.in_service += 1
        replica.prefill_queue.append(i)
        if not replica.prefilling:
            start_prefill(replica, at)

    while events:
        now, kind, _, i = heapq.heappop(events)
        request = requests[i]
        if kind == _ARRIVAL:
            started = time.perf_counter()
            replica = router.choose(replicas, request.blocks)
            choose_s += time.perf_counter() - started
            where[i] = index[replica.id]
            replica.outstanding += 1
            replica.requests += 1
            if replica.in_service < model.batch:
                admit(replica, i, now)
            else:
                replica.waiting.append(i)
        elif kind == _PREFILL_DONE:
            replica = replicas[where[i]]
            ttft[i] = now - request.arrival
            replica.prefilling = False
            decode = request.output_length * model.decode_s_per_token
            replica.busy_s += decode
            seq += 1
            heapq.heappush(events, (now + decode, _DECODE_DONE, seq, i))
            if replica.prefill_queue:
                start_prefill(replica, now)
        else:  # _DECODE_DONE
            replica = replicas[where[i]]
            replica.outstanding -= 1
            replica.in_service -= 1
            if replica.waiting:
                admit(replica, replica.waiting.popleft(), now)

    ttfts = sorted(ttft)
    return PolicyResult(
        policy=policy,
        requests=len(requests),
        hit_rate=hit_blocks / total_blocks if total_blocks else 0.0,
        requests_max_over_mean=_ratio([float(r.requests) for r in replicas]),
        busy_max_over_mean=_ratio([r.busy_s for r in replicas]),
        prefill_max_over_mean=_ratio([r.prefill_s for r in replicas]),
        ttft_mean_s=statistics.fmean(ttfts) if ttfts else 0.0,
        ttft_p50_s=_percentile(ttfts, 0.50),
        ttft_p99_s=_percentile(ttfts, 0.99),
        choose_us=choose_s / len(requests) * 1e6 if requests else 0.0,
        makespan_s=now,
    )


def table(results: list[PolicyResult]) -> str:
    head = (
        "| policy | hit rate | requests max/mean | busy max/mean | prefill max/mean "
        "| TTFT mean s | TTFT p50 s | TTFT p99 s | choose us |"
    )
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append(
            f"| {r.policy} | {r.hit_rate:.1%} | {r.requests_max_over_mean:.2f} "
            f"| {r.busy_max_over_mean:.2f} | {r.prefill_max_over_mean:.2f} "
            f"| {r.ttft_mean_s:.2f} | {r.ttft_p50_s:.2f} | {r.ttft_p99_s:.2f} "
            f"| {r.choose_us:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE, help="JSON lines trace")
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="replay the first N requests")
    parser.add_argument("--speedup", type=float, default=4.0, help="divide arrival times by this")
    parser.add_argument("--cache-blocks", type=int, default=960, help="KV blocks per replica")
    parser.add_argument("--batch", type=int, default=32, help="max requests in service")
    parser.add_argument("--prefill-us", type=float, default=50.0, help="per uncached token")
    parser.add_argument("--decode-ms", type=float, default=20.0, help="per output token")
    parser.add_argument("--cache-threshold", type=float, default=DEFAULT_CACHE_THRESHOLD)
    parser.add_argument("--balance-abs", type=int, default=DEFAULT_BALANCE_ABS_THRESHOLD)
    parser.add_argument("--balance-rel", type=float, default=DEFAULT_BALANCE_REL_THRESHOLD)
    parser.add_argument(
        "--router-capacity",
        type=int,
        default=DEFAULT_CAPACITY_BLOCKS,
        help="blocks the prefix_cache router records per replica",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.speedup <= 0 or args.batch < 1 or args.cache_blocks < 1:
        parser.error("--replicas, --speedup, --batch and --cache-blocks must be positive")
    if not args.trace.is_file():
        parser.error(f"no trace at {args.trace}")

    requests = load_trace(args.trace, args.limit, args.speedup)
    if not requests:
        parser.error("the trace has no requests")
    model = ServiceModel(
        cache_blocks=args.cache_blocks,
        batch=args.batch,
        prefill_s_per_token=args.prefill_us * 1e-6,
        decode_s_per_token=args.decode_ms * 1e-3,
    )
    options: dict[str, float] = {
        "cache_threshold": args.cache_threshold,
        "balance_abs_threshold": args.balance_abs,
        "balance_rel_threshold": args.balance_rel,
        "capacity_blocks": args.router_capacity,
    }
    started = time.perf_counter()
    results = [simulate(p, requests, args.replicas, model, options) for p in POLICIES]
    elapsed = time.perf_counter() - started
    by_policy = {r.policy: r for r in results}
    rr_hits = by_policy["round_robin"].hit_rate
    pc = by_policy["prefix_cache"]
    hit_ratio = pc.hit_rate / rr_hits if rr_hits else float("inf")
    balance = max(pc.requests_max_over_mean, pc.busy_max_over_mean)

    if args.json:
        out: dict[str, Any] = {
            "trace": args.trace.name,
            "requests": len(requests),
            "replicas": args.replicas,
            "speedup": args.speedup,
            "service_model": {
                "cache_blocks": model.cache_blocks,
                "block_tokens": BLOCK_TOKENS,
                "batch": model.batch,
                "prefill_us_per_token": args.prefill_us,
                "decode_ms_per_token": args.decode_ms,
            },
            "router_options": options,
            "policies": {r.policy: _asdict(r) for r in results},
            "prefix_cache_hit_rate_over_round_robin": hit_ratio,
            "prefix_cache_busiest_over_mean": balance,
            "targets": {"hit_ratio_min": HIT_RATIO_TARGET, "balance_max": BALANCE_TARGET},
            "elapsed_s": elapsed,
        }
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0

    print(
        f"{args.trace.name}: {len(requests)} requests, {args.replicas} replicas, "
        f"speedup {args.speedup:g}x; replica: {model.cache_blocks} KV blocks of {BLOCK_TOKENS} "
        f"tokens, batch {model.batch}, prefill {args.prefill_us:g} us/token, "
        f"decode {args.decode_ms:g} ms/token"
    )
    print(
        f"prefix_cache: cache_threshold {args.cache_threshold:g}, balance_abs "
        f"{args.balance_abs}, balance_rel {args.balance_rel:g}, record {args.router_capacity} "
        "blocks per replica"
    )
    print()
    print(table(results))
    print()
    hit_ok = "met" if hit_ratio >= HIT_RATIO_TARGET else "NOT met"
    bal_ok = "met" if balance <= BALANCE_TARGET else "NOT met"
    print(
        f"prefix_cache hit rate / round_robin hit rate: {hit_ratio:.2f}x "
        f"(target >= {HIT_RATIO_TARGET:g}x: {hit_ok})"
    )
    print(
        f"prefix_cache busiest / mean load: {pc.requests_max_over_mean:.2f}x requests, "
        f"{pc.busy_max_over_mean:.2f}x busy time (target <= {BALANCE_TARGET:g}x: {bal_ok})"
    )
    print(f"simulated in {elapsed:.1f} s")
    return 0


def _asdict(result: PolicyResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in result.__dataclass_fields__}


if __name__ == "__main__":
    raise SystemExit(main())
