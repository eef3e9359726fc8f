"""`suanli sim ...`: replay traces on a fleet with the platform's own scheduler, offline.

Each command prints the headline metrics and writes, under ``--out``, ``summary.json``,
``jobs.csv``, three PNG charts and ``report.html``. ``whatif`` runs one workload on a
fleet file and on the fleet changed by ``--add`` / ``--remove``, side by side.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from suanli.catalog.chips import load_catalog
from suanli.cli.common import console, err_console, print_json, table
from suanli.errors import SuanliError, ValidationError

if TYPE_CHECKING:
    from suanli.sim.cluster import SimConfig, SimJob, SimRun
    from suanli.sim.fleetfile import SimFleet

sim_app = typer.Typer(
    help="Trace-driven simulation of the scheduler on a fleet: capacity planning, what-ifs.",
    no_args_is_help=True,
)

DEFAULT_GPUS = 2000
TRACES = ("llm", "philly", "alibaba", "gavel")

OutOpt = Annotated[Path | None, typer.Option("--out", help="folder for the report files")]
PolicyOpt = Annotated[
    str,
    typer.Option(
        help="placement policy: binpack, spread, fragmentation, throughput, domestic-first, cost"
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
FleetOpt = Annotated[
    Path | None, typer.Option("--fleet", help="fleet file (as for `suanli fleet apply`)")
]
GpusOpt = Annotated[int, typer.Option(help="accelerators of the generated fleet (no --fleet)")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", help="only the first N jobs")]
HoursOpt = Annotated[float | None, typer.Option("--hours", help="only jobs arriving in H hours")]
IntervalOpt = Annotated[
    float, typer.Option("--interval", help="least simulated seconds between rounds")
]
WindowOpt = Annotated[
    int, typer.Option("--window", help="queued jobs a round offers the scheduler at most")
]
PerfOpt = Annotated[
    Path | None,
    typer.Option("--perf", help="perf assumptions file [built-in: 910B bf16 280 TFLOPS]"),
]
RulesOpt = Annotated[Path | None, typer.Option("--rules", help="compliance rules [packaged]")]
PricesOpt = Annotated[
    Path | None, typer.Option("--price-book", help="price book for revenue [packaged example]")
]
ReferenceOpt = Annotated[
    str, typer.Option("--reference-chip", help="the chip a trace's run times are measured on")
]


@dataclass
class _Common:
    policy: str
    out: Path | None
    as_json: bool
    interval: float
    window: int
    perf: Path | None
    rules: Path | None
    price_book: Path | None
    reference: str


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(2)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Bad input ends the command with its message and exit code 2, no traceback."""
    try:
        yield
    except ValidationError as exc:
        where = f"{exc.field}: " if exc.field and exc.field not in exc.message else ""
        line = f" (line {exc.line})" if exc.line else ""
        raise _fail(f"{where}{exc.message}{line}") from None
    except SuanliError as exc:
        raise _fail(exc.message) from None
    except (OSError, ValueError, KeyError) as exc:
        raise _fail(str(exc)) from None


def _config(c: _Common) -> SimConfig:
    from suanli.policy.rules import parse_rules
    from suanli.scheduler.placement import POLICIES
    from suanli.sim.assumptions import DEFAULT_ASSUMPTIONS, load_assumptions
    from suanli.sim.cluster import SimConfig

    policy = POLICIES.get(c.policy)
    if policy is None:
        raise ValidationError(
            f"unknown policy {c.policy!r}; one of {', '.join(POLICIES)}", "--policy"
        )
    if not math.isfinite(c.interval) or c.interval < 0:
        raise ValidationError("--interval is a number of seconds >= 0", "--interval")
    if c.window < 1:
        raise ValidationError("--window must be at least 1", "--window")
    load_catalog().get(c.reference, field="--reference-chip")
    rules = None
    if c.rules is not None:
        rules = parse_rules(c.rules.read_text(encoding="utf-8"))
    assumptions = DEFAULT_ASSUMPTIONS if c.perf is None else load_assumptions(c.perf)
    return SimConfig(
        policy=policy,
        interval_s=c.interval,
        window=c.window,
        reference_chip=load_catalog().get(c.reference).model,
        rules=rules,
        assumptions=assumptions,
    )


def _prices(path: Path | None) -> dict[str, tuple[int, float, str]]:
    from suanli.billing.prices import load_packaged_price_book, parse_price_book

    if path is None:
        book = load_packaged_price_book()
    else:
        book = parse_price_book(path.read_text(encoding="utf-8"), path.name)
    return {
        chip: (p.per_hour_micros, float(p.spot_discount), book.currency)
        for chip, p in book.accelerators.items()
    }


def _data(option: str, relative: str, given: Path | None) -> Path:
    from suanli.sim.sources import find_data

    if given is not None:
        if not given.exists():
            raise ValidationError(f"{option}: {given} does not exist", option)
        return given
    found = find_data(relative)
    if found is None:
        raise ValidationError(
            f"{option}: shared/data/{relative} not found beside this directory or its "
            f"parents; pass {option} PATH",
            option,
        )
    return found


def _fleet(path: Path | None, gpus: int) -> SimFleet:
    from suanli.domain.fleet import parse_text
    from suanli.sim.fleetfile import fleet_from_parsed, generated_fleet_text, load_fleet

    if path is not None:
        return load_fleet(path)
    if gpus < 8:
        raise ValidationError("--gpus must be at least 8", "--gpus")
    return fleet_from_parsed(parse_text(generated_fleet_text(gpus)))


@contextlib.contextmanager
def _progress(label: str, total: int, quiet: bool) -> Iterator[Callable[[float, int, int], None]]:
    """A bar of jobs done, with the simulated time, on stderr."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} jobs"),
        TextColumn("sim {task.fields[sim]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=quiet,
    ) as bar:
        task = bar.add_task(label, total=total, sim="0 h")
        last = [0]

        def update(sim_s: float, done: int, total: int) -> None:
            last[0] += 1
            if last[0] % 50 == 0 or done == total:
                bar.update(task, completed=done, total=total, sim=f"{sim_s / 3600:,.0f} h")

        yield update


def _run(
    label: str,
    jobs: list[SimJob],
    fleet: SimFleet,
    c: _Common,
    quiet: bool = False,
    name: str = "",
) -> SimRun:
    from suanli.sim.cluster import simulate

    config = _config(c)
    if not jobs:
        raise ValidationError("no jobs to simulate (check --jobs / --hours)", "--jobs")
    with _progress(label, len(jobs), quiet or c.as_json) as update:
        return simulate(
            jobs, list(fleet.nodes), fleet.snapshot, config, progress=update, label=name or label
        )


def _finish(title: str, runs: list[SimRun], c: _Common, default_out: str, notes: list[str]) -> None:
    from suanli.sim.report import headline, summarize, write_reports

    prices = _prices(c.price_book)
    summaries = [summarize(r, prices) for r in runs]
    out = c.out if c.out is not None else Path(default_out)
    written = write_reports(out, runs, summaries, title, notes)
    if c.as_json:
        print_json(summaries[0])
        return
    table(title, ["metric", "value"], [(n, shown) for n, _, shown in headline(summaries[0])])
    for note in notes:
        console.print(note, highlight=False)
    console.print(f"report: {out / 'report.html'} ({len(written)} files in {out})", highlight=False)


def _common(
    policy: str,
    out: Path | None,
    as_json: bool,
    interval: float,
    window: int,
    perf: Path | None,
    rules: Path | None,
    price_book: Path | None,
    reference: str,
) -> _Common:
    return _Common(policy, out, as_json, interval, window, perf, rules, price_book, reference)


@sim_app.command("philly")
def philly(
    trace: Annotated[Path | None, typer.Option(help="philly.csv [shared/data]")] = None,
    fleet: FleetOpt = None,
    gpus: GpusOpt = DEFAULT_GPUS,
    jobs: JobsOpt = None,
    hours: HoursOpt = None,
    residency: Annotated[
        float, typer.Option(help="share of tenants whose data must stay in China")
    ] = 0.2,
    seed: int = 0,
    policy: PolicyOpt = "throughput",
    reference_chip: ReferenceOpt = "H100 SXM",
    interval: IntervalOpt = 60.0,
    window: WindowOpt = 100,
    perf: PerfOpt = None,
    rules: RulesOpt = None,
    price_book: PricesOpt = None,
    out: OutOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay the Philly trace (jobs as training gangs; durations on --reference-chip)."""
    from suanli.sim.sources import philly_jobs

    c = _common(policy, out, as_json, interval, window, perf, rules, price_book, reference_chip)
    with _errors():
        if not 0 <= residency <= 1:
            raise ValidationError("--residency is a share between 0 and 1", "--residency")
        path = _data("--trace", "traces/philly/philly.csv", trace)
        f = _fleet(fleet, gpus)
        work = philly_jobs(path, residency=residency, seed=seed, count=jobs, hours=hours)
        run = _run("philly", work, f, c)
        _finish("Philly replay", [run], c, "sim-philly", [])


@sim_app.command("alibaba")
def alibaba(
    pods: Annotated[
        Path | None, typer.Option(help="pod list [shared/data: openb_pod_list_default.csv]")
    ] = None,
    nodes: Annotated[
        Path | None, typer.Option(help="node list, the fleet [openb_node_list_all_node.csv]")
    ] = None,
    fleet: FleetOpt = None,
    mode: Annotated[
        str,
        typer.Option(
            help="fill: place pods until the fleet is full, per policy (how the trace is "
            "meant to be read); replay: at the recorded creation and deletion times"
        ),
    ] = "fill",
    policies: Annotated[
        str, typer.Option(help="fill: the policies to compare, comma-separated")
    ] = "binpack,spread,fragmentation,throughput",
    until: Annotated[
        float, typer.Option(help="fill: stop when this much demand arrived (x capacity)")
    ] = 1.3,
    seed: int = 0,
    tenants: Annotated[int, typer.Option(help="synthetic tenants the pods spread over")] = 32,
    jobs: JobsOpt = None,
    hours: HoursOpt = None,
    policy: PolicyOpt = "fragmentation",
    interval: IntervalOpt = 60.0,
    window: WindowOpt = 100,
    perf: PerfOpt = None,
    rules: RulesOpt = None,
    price_book: PricesOpt = None,
    out: OutOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay an Alibaba 2023 pod list (GPU shares kept) on its own node list by default.

    By default (--mode fill) pods drawn from the list fill the fleet without leaving, once
    per policy, and the report compares how much of the fleet each policy allocates before
    refusing pods: at the trace's own pace the node list is about 0.2% busy, so this, not
    a replay in time, is how the trace's authors evaluate GPU-sharing schedulers."""
    c = _common(policy, out, as_json, interval, window, perf, rules, price_book, "H100 SXM")
    with _errors():
        if tenants < 1:
            raise ValidationError("--tenants must be at least 1", "--tenants")
        if mode not in ("fill", "replay"):
            raise ValidationError(f"--mode is fill or replay, not {mode!r}", "--mode")
        if mode == "fill":
            from suanli.cli.sim_fill import fill_command, fill_options

            names = fill_options(policies, until)
            config = _config(c)
            work, _dropped, f = _alibaba(pods, nodes, fleet, tenants, jobs, hours)
            out = c.out if c.out is not None else Path("sim-alibaba")
            fill_command(work, f, config.rules, names, until, seed, out, c.as_json)
            return
        work, dropped, f = _alibaba(pods, nodes, fleet, tenants, jobs, hours)
        run = _run("alibaba", work, f, c)
        run.dropped["no run time"] = dropped
        note = f"{dropped} GPU pods without a run time left out" if dropped else ""
        _finish("Alibaba 2023 replay", [run], c, "sim-alibaba", [note] if note else [])


def _alibaba(
    pods: Path | None,
    nodes: Path | None,
    fleet: Path | None,
    tenants: int,
    jobs: int | None,
    hours: float | None,
) -> tuple[list[SimJob], int, SimFleet]:
    from suanli.policy.snapshot import DataCenterView, FleetSnapshot
    from suanli.sim.alibaba import load_nodes
    from suanli.sim.fleetfile import SimFleet, load_fleet
    from suanli.sim.sources import alibaba_jobs

    base = "traces/alibaba-gpu-2023/"
    pod_path = _data("--pods", base + "openb_pod_list_default.csv", pods)
    work, dropped = alibaba_jobs(pod_path, tenants=tenants, count=jobs, hours=hours)
    if fleet is not None:
        return work, dropped, load_fleet(fleet)
    node_path = _data("--nodes", base + "openb_node_list_all_node.csv", nodes)
    listed = load_nodes(node_path)
    snapshot = FleetSnapshot({"openb": DataCenterView("openb", "CN", "private")})
    return work, dropped, SimFleet(listed.nodes, snapshot, {"openb": ""})


@sim_app.command("llm")
def llm(
    count: Annotated[int, typer.Option(help="workloads to generate")] = 2000,
    seed: int = 0,
    rate: Annotated[
        float | None, typer.Option(help="arrivals per hour [120 per 4,096 accelerators]")
    ] = None,
    fleet: FleetOpt = None,
    gpus: GpusOpt = DEFAULT_GPUS,
    hours: HoursOpt = None,
    policy: PolicyOpt = "throughput",
    interval: IntervalOpt = 60.0,
    window: WindowOpt = 100,
    perf: PerfOpt = None,
    rules: RulesOpt = None,
    price_book: PricesOpt = None,
    out: OutOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay generated LLM-era work (inference, fine-tunes, training, rentals)."""
    from suanli.sim.sources import llm_jobs, llm_rate

    c = _common(policy, out, as_json, interval, window, perf, rules, price_book, "H100 SXM")
    with _errors():
        if count < 1:
            raise ValidationError("--count must be at least 1", "--count")
        if rate is not None and rate <= 0:
            raise ValidationError("--rate must be positive", "--rate")
        f = _fleet(fleet, gpus)
        per_hour = rate if rate is not None else llm_rate(sum(f.accelerators().values()))
        run = _run("llm", llm_jobs(count, seed, hours=hours, arrivals_per_hour=per_hour), f, c)
        _finish("LLM-era workload replay", [run], c, "sim-llm", [])


@sim_app.command("gavel")
def gavel(
    trace: Annotated[Path, typer.Argument(help="a Gavel trace file (10 tab-separated fields)")],
    matrix: Annotated[
        Path | None, typer.Option(help="Gavel throughputs [simulation_throughputs.json]")
    ] = None,
    fleet: FleetOpt = None,
    gpus: GpusOpt = DEFAULT_GPUS,
    jobs: JobsOpt = None,
    hours: HoursOpt = None,
    policy: PolicyOpt = "throughput",
    reference_chip: ReferenceOpt = "Tesla V100 SXM2",
    interval: IntervalOpt = 60.0,
    window: WindowOpt = 100,
    perf: PerfOpt = None,
    rules: RulesOpt = None,
    price_book: PricesOpt = None,
    out: OutOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Replay a Gavel trace file (run times from Gavel's V100 throughputs)."""
    from suanli.sim.sources import gavel_jobs

    c = _common(policy, out, as_json, interval, window, perf, rules, price_book, reference_chip)
    with _errors():
        if not trace.exists():
            raise ValidationError(f"TRACE: {trace} does not exist", "TRACE")
        matrix_path = _data("--matrix", "gavel/simulation_throughputs.json", matrix)
        work, missing = gavel_jobs(trace, matrix_path, count=jobs, hours=hours)
        f = _fleet(fleet, gpus)
        run = _run("gavel", work, f, c)
        run.dropped["no V100 throughput"] = missing
        notes = [f"{missing} jobs without a V100 throughput left out"] if missing else []
        _finish("Gavel trace replay", [run], c, "sim-gavel", notes)


@sim_app.command("whatif")
def whatif(
    fleet: Annotated[Path, typer.Option("--fleet", help="the fleet file of today")],
    add: Annotated[
        list[str] | None,
        typer.Option(help='DATA_CENTER_OR_REGION:CHIP:COUNT, e.g. "Ningxia:Ascend 910B:512"'),
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option(help="NODE (glob) or DATA_CENTER:CHIP:COUNT")
    ] = None,
    trace: Annotated[str, typer.Option(help="llm, philly, alibaba or gavel")] = "llm",
    trace_file: Annotated[
        Path | None, typer.Option(help="the trace's file [shared/data]; required for gavel")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="jobs of the workload")] = 2000,
    hours: HoursOpt = None,
    seed: int = 0,
    residency: Annotated[float, typer.Option(help="philly: share of CN-bound tenants")] = 0.2,
    policy: PolicyOpt = "throughput",
    reference_chip: ReferenceOpt = "H100 SXM",
    interval: IntervalOpt = 60.0,
    window: WindowOpt = 100,
    perf: PerfOpt = None,
    rules: RulesOpt = None,
    price_book: PricesOpt = None,
    out: OutOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Run one workload on the fleet and on the fleet changed, and compare them."""
    from suanli.sim.fleetfile import apply_changes, load_fleet, parse_addition, parse_removal
    from suanli.sim.report import compare, summarize, write_reports

    c = _common(policy, out, as_json, interval, window, perf, rules, price_book, reference_chip)
    with _errors():
        if trace not in TRACES:
            raise ValidationError(f"--trace: one of {', '.join(TRACES)}, not {trace!r}", "--trace")
        if not add and not remove:
            raise ValidationError("give at least one --add or --remove", "--add")
        base = load_fleet(fleet)
        changed = apply_changes(
            base, [parse_addition(a) for a in add or []], [parse_removal(r) for r in remove or []]
        )
        size = sum(base.accelerators().values())
        if not 0 <= residency <= 1:
            raise ValidationError("--residency is a share between 0 and 1", "--residency")
        work = _workload(trace, trace_file, jobs, hours, seed, residency, size)
        runs = [
            _run("baseline", work, base, c, name="baseline"),
            _run("changed", work, changed, c, name="changed"),
        ]
        notes = [_change_words(add or [], remove or []), *_share_checks(base, changed, c)]
        prices = _prices(c.price_book)
        summaries = [summarize(r, prices) for r in runs]
        folder = c.out if c.out is not None else Path("sim-whatif")
        write_reports(folder, runs, summaries, f"What if: {notes[0]}", notes)
        rows = compare(summaries[0], summaries[1])
        if as_json:
            cols = ("metric", "baseline", "changed", "delta")
            print_json(
                {
                    "baseline": summaries[0],
                    "changed": summaries[1],
                    "comparison": [dict(zip(cols, r, strict=True)) for r in rows],
                    "notes": notes,
                }
            )
            return
        table(f"What if: {notes[0]} ({trace}, {len(work):,} jobs)",
              ["metric", "baseline", "changed", "delta"], rows)  # fmt: skip
        for note in notes[1:]:
            console.print(note, highlight=False)
        console.print(f"report: {folder / 'report.html'}", highlight=False)


def _change_words(add: list[str], remove: list[str]) -> str:
    words = [f"add {a}" for a in add] + [f"remove {r}" for r in remove]
    return "; ".join(words)


def _share_checks(base: SimFleet, changed: SimFleet, c: _Common) -> list[str]:
    """The domestic-share rules of the data centers the change touches, before and after."""
    from suanli.policy.evaluate import check_fleet_change
    from suanli.policy.rules import default_rules, parse_rules

    rules = default_rules() if c.rules is None else parse_rules(c.rules.read_text("utf-8"))
    before = {(n.name, n.data_center) for n in base.nodes}
    after = {(n.name, n.data_center) for n in changed.nodes}
    touched = {dc for _, dc in before ^ after}
    checks = check_fleet_change(base.snapshot, changed.snapshot, touched, rules, load_catalog())
    return [f"[{ch.rule.id}] {ch.sentence()}: {ch.status}" for ch in checks]


def _workload(
    trace: str,
    path: Path | None,
    jobs: int,
    hours: float | None,
    seed: int,
    residency: float,
    accelerators: int,
) -> list[SimJob]:
    from suanli.sim.sources import alibaba_jobs, gavel_jobs, llm_jobs, llm_rate, philly_jobs

    if trace == "llm":
        return llm_jobs(jobs, seed, hours=hours, arrivals_per_hour=llm_rate(accelerators))
    if trace == "philly":
        p = _data("--trace-file", "traces/philly/philly.csv", path)
        return philly_jobs(p, residency=residency, seed=seed, count=jobs, hours=hours)
    if trace == "alibaba":
        p = _data("--trace-file", "traces/alibaba-gpu-2023/openb_pod_list_default.csv", path)
        return alibaba_jobs(p, count=jobs, hours=hours)[0]
    if path is None:
        raise ValidationError("--trace gavel needs --trace-file PATH", "--trace-file")
    matrix = _data("--matrix", "gavel/simulation_throughputs.json", None)
    return gavel_jobs(path, matrix, count=jobs, hours=hours)[0]
