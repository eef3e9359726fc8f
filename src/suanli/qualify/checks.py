"""The tests of the suite: each measures through the backend and judges against criteria.

Every function returns measurements; none passes without a measured value. Rates: matmul
2n^3 operations per product; device memory bandwidth counts bytes read plus written;
host bandwidth bytes moved; all-reduce bus bandwidth = algorithm bandwidth x 2(n-1)/n.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from suanli.catalog.chips import Chip
from suanli.qualify.backends.base import PATTERNS, Backend, UnsupportedError
from suanli.qualify.model import Measurement, Status
from suanli.qualify.thresholds import Criteria, Limit, Plan

GIB = 1 << 30
MIB = 1 << 20


@dataclass
class Context:
    backend: Backend
    chip: Chip | None
    criteria: Criteria
    plan: Plan | None  # None at the quick level
    matmul: dict[str, list[Measurement]] = field(default_factory=dict)  # by precision

    @property
    def all_devices(self) -> list[int]:
        return list(range(len(self.backend.devices)))

    def name(self, device: int) -> str:
        return self.backend.devices[device]

    def need_plan(self) -> Plan:
        if self.plan is None:
            raise RuntimeError("this test runs at the standard and long levels only")
        return self.plan


def judge(
    test: str,
    device: str | None,
    metric: str,
    value: float,
    unit: str,
    limit: Limit,
    *,
    at_most: bool = False,
    detail: str = "",
    broken: str = "",
    samples: tuple[float, ...] = (),
    interval: float = 0.0,
    sample_unit: str = "",
) -> Measurement:
    """Judge ``value`` against ``limit`` (at least, or ``at_most``); ``broken`` fails it
    whatever the value (a wrong result)."""
    notes = "; ".join(x for x in (broken, detail) if x)
    status: Status
    if limit.threshold is None:
        status = "failed" if broken else "skipped"
        rule = f"no threshold: {limit.rule}"
    else:
        ok = value <= limit.threshold if at_most else value >= limit.threshold
        status = "passed" if ok and not broken else "failed"
        rule = f"{metric} {limit.rule}"
    return Measurement(
        test,
        device,
        metric,
        value,
        unit,
        limit.threshold,
        rule,
        status,
        notes,
        samples,
        interval,
        sample_unit,
    )


def skipped(test: str, device: str | None, metric: str, reason: str) -> Measurement:
    return Measurement(test, device, metric, None, "", None, "not run", "skipped", reason)


def check_devices(ctx: Context) -> list[Measurement]:
    found = len(ctx.backend.devices)
    detail = f"{', '.join(ctx.backend.devices) or 'none'}; {ctx.backend.runtime_info()}"
    if ctx.chip is not None and ctx.backend.kind == "cpu":
        detail += f"; chip {ctx.chip.model} not used: the CPU is held to configured minimums"
    limit = Limit(1, ">= 1 (devices the runtime sees)")
    return [judge("devices", None, "devices found", found, "devices", limit, detail=detail)]


def check_runtime(ctx: Context) -> list[Measurement]:
    limit = Limit(0.0, "<= 0 (ones(64x64) @ ones(64x64) must equal 64 exactly)")
    out = []
    for d in ctx.all_devices:
        error = ctx.backend.sanity(d)
        out.append(judge("runtime", ctx.name(d), "max abs error", error, "", limit, at_most=True))
    return out


def check_memory_size(ctx: Context) -> list[Measurement]:
    out = []
    for d in ctx.all_devices:
        gib = ctx.backend.memory_total(d) / GIB
        out.append(
            judge("memory_size", ctx.name(d), "memory", gib, "GiB", ctx.criteria.memory_size)
        )
    return out


def check_matmul(ctx: Context) -> list[Measurement]:
    plan, out = ctx.need_plan(), []
    n = plan.matmul_n
    for precision in ctx.backend.precisions:
        test = f"matmul_{precision}"
        unit = ctx.criteria.matmul_unit(precision)
        limit = ctx.criteria.matmul.get(precision, Limit(None, f"none set for {precision}"))
        try:
            run = ctx.backend.matmul(ctx.all_devices, precision, n, plan.matmul_seconds)
        except UnsupportedError as exc:
            out += [skipped(test, ctx.name(d), "throughput", str(exc)) for d in ctx.all_devices]
            continue
        results = []
        for d, seconds, bad in zip(ctx.all_devices, run.seconds, run.bad_results, strict=True):
            rate = 2 * n**3 / seconds / ctx.criteria.matmul_scale
            broken = f"{bad} product(s) failed the checksum" if bad else ""
            detail = f"{n}x{n} {precision}, {seconds * 1e3:.3g} ms per product"
            m = judge(
                test, ctx.name(d), "throughput", rate, unit, limit, detail=detail, broken=broken
            )
            results.append(m)
        ctx.matmul[precision] = results
        out += results
    return out


def check_memory_bandwidth(ctx: Context) -> list[Measurement]:
    plan, out = ctx.need_plan(), []
    size = plan.copy_bytes
    for d in ctx.all_devices:
        seconds = ctx.backend.device_copy(d, size, plan.bandwidth_seconds)
        gbps = 2 * size / seconds / 1e9
        detail = f"copy of {size / MIB:g} MiB in {seconds * 1e3:.3g} ms, read + write counted"
        limit = ctx.criteria.memory_bandwidth
        out.append(
            judge("memory_bandwidth", ctx.name(d), "bandwidth", gbps, "GB/s", limit, detail=detail)
        )
    return out


def check_host_bandwidth(ctx: Context) -> list[Measurement]:
    plan, out = ctx.need_plan(), []
    size = plan.host_copy_bytes
    for d in ctx.all_devices:
        for direction, seconds in ctx.backend.host_copy(d, size, plan.bandwidth_seconds).items():
            gbps = size / seconds / 1e9
            detail = f"{size / MIB:g} MiB in {seconds * 1e3:.3g} ms"
            limit = ctx.criteria.host_bandwidth
            out.append(
                judge("host_bandwidth", ctx.name(d), direction, gbps, "GB/s", limit, detail=detail)
            )
    return out


def _integrity_one(ctx: Context, device: int, words: int, plan: Plan) -> tuple[int, str]:
    buf = ctx.backend.allocate(device, words)
    found: dict[str, int] = {}
    for _ in range(plan.integrity_passes):
        for pattern in PATTERNS[: plan.integrity_patterns]:
            ctx.backend.write_pattern(buf, pattern)
            wrong = ctx.backend.count_mismatches(buf, pattern)
            found[pattern.name] = found.get(pattern.name, 0) + wrong
    bad = ", ".join(f"{name}: {k}" for name, k in found.items() if k)
    return sum(found.values()), bad


def check_memory_integrity(ctx: Context) -> list[Measurement]:
    plan, out = ctx.need_plan(), []
    limit = Limit(ctx.criteria.max_mismatches, f"<= {ctx.criteria.max_mismatches}")
    for d in ctx.all_devices:
        if plan.integrity_bytes is not None:
            words = plan.integrity_bytes // 4
        else:
            words = int(ctx.backend.memory_free(d) * (plan.integrity_fraction or 0)) // 4
        wrong, bad = _integrity_one(ctx, d, words, plan)
        names = ", ".join(p.name for p in PATTERNS[: plan.integrity_patterns])
        detail = f"{plan.integrity_passes} pass(es) of {names} over {words * 4 / MIB:.1f} MiB"
        if bad:
            detail += f"; mismatches by pattern: {bad}"
        out.append(
            judge(
                "memory_integrity",
                ctx.name(d),
                "mismatched words",
                wrong,
                "words",
                limit,
                at_most=True,
                detail=detail,
            )
        )
    return out


def check_all_reduce(ctx: Context) -> list[Measurement]:
    plan, n = ctx.need_plan(), len(ctx.backend.devices)
    if n < 2:
        reason = f"all-reduce needs 2 or more devices; this node has {n}"
        return [skipped("all_reduce", None, "bus bandwidth", reason)]
    run = ctx.backend.all_reduce(plan.all_reduce_bytes, plan.all_reduce_seconds)
    algbw = plan.all_reduce_bytes / run.seconds / 1e9
    busbw = algbw * 2 * (n - 1) / n
    detail = (
        f"{plan.all_reduce_bytes / MIB:g} MiB over {n} devices in {run.seconds * 1e3:.3g} ms: "
        f"algorithm bandwidth {algbw:.4g} GB/s x 2(n-1)/n; {run.method}"
    )
    broken = (
        f"{run.wrong_elements} result element(s) differ from the sum" if run.wrong_elements else ""
    )
    limit = ctx.criteria.all_reduce
    return [
        judge(
            "all_reduce", None, "bus bandwidth", busbw, "GB/s", limit, detail=detail, broken=broken
        )
    ]


def check_soak(ctx: Context) -> list[Measurement]:
    plan = ctx.need_plan()
    measured = [p for p in ctx.backend.precisions if p in ctx.matmul]
    if not measured:
        return [skipped("soak", None, "throughput", "no matmul precision could be measured")]
    precision, count, devices = measured[0], plan.soak_samples, ctx.all_devices
    window, unit = plan.soak_seconds / count, ctx.criteria.matmul_unit(precision)
    rates: list[list[float]] = [[] for _ in devices]
    bad, error = [0 for _ in devices], ""
    start = time.perf_counter()
    for _ in range(count):
        try:
            run = ctx.backend.matmul(devices, precision, plan.matmul_n, window)
        except Exception as exc:  # an error under load is a finding, not a crash
            error = f"error after {len(rates[0])} samples: {type(exc).__name__}: {exc}"
            break
        for d, seconds in enumerate(run.seconds):
            rates[d].append(2 * plan.matmul_n**3 / seconds / ctx.criteria.matmul_scale)
            bad[d] += run.bad_results[d]
    interval = (time.perf_counter() - start) / max(1, len(rates[0]))
    tol = ctx.criteria.soak_drop_tolerance
    limit = Limit(1 - tol, f">= {1 - tol:g} (last third's median vs the first third's)")
    out = []
    for d in devices:
        series = tuple(rates[d])
        third = len(series) // 3
        if third == 0:
            out.append(skipped("soak", ctx.name(d), "throughput", error or "too few samples"))
            continue
        first, last = statistics.median(series[:third]), statistics.median(series[-third:])
        detail = (
            f"{precision} {plan.matmul_n}x{plan.matmul_n}, {len(series)} samples every "
            f"{interval:.3g} s; median {first:.4g} {unit} in the first third, "
            f"{last:.4g} in the last"
        )
        broken = "; ".join(
            x for x in (error, f"{bad[d]} product(s) failed the checksum" if bad[d] else "") if x
        )
        if last < (1 - tol) * first:
            detail = f"throttling: sustained drop of {1 - last / first:.0%}; {detail}"
        out.append(
            judge(
                "soak",
                ctx.name(d),
                "sustained / initial throughput",
                last / first,
                "x",
                limit,
                detail=detail,
                broken=broken,
                samples=series,
                interval=interval,
                sample_unit=unit,
            )
        )
    return out


def check_peers(ctx: Context, results: dict[str, list[Measurement]]) -> list[Measurement]:
    """Each device against the median of its identical peers, per source test."""
    tol = ctx.criteria.peer_tolerance
    limit = Limit(1 - tol, f">= {1 - tol:g} x the median of the device's peers")
    out = []
    for source, measurements in results.items():
        values = [(m.device, m.value) for m in measurements if m.value is not None]
        if len(values) < 2:
            reason = f"needs 2 or more identical devices measured; {len(values)} measured"
            out.append(skipped("peer_comparison", None, f"{source} / peer median", reason))
            continue
        unit = measurements[0].unit
        for i, (device, value) in enumerate(values):
            peers = [v for j, (_, v) in enumerate(values) if j != i]
            median = statistics.median(peers)
            ratio = value / median if median > 0 else 0.0
            detail = f"{value:.4g} {unit} vs median {median:.4g} {unit} of {len(peers)} peer(s)"
            out.append(
                judge(
                    "peer_comparison",
                    device,
                    f"{source} / peer median",
                    ratio,
                    "x",
                    limit,
                    detail=detail,
                )
            )
    return out
