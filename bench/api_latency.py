"""API latency of the suanli control plane: registering nodes and listing them, per backend.

For each backend (SQLite in a temp file; PostgreSQL when ``--pg-url`` or
``SUANLI_BENCH_PG_URL`` names a server) the script migrates a fresh database, issues an admin
token, starts the real API with uvicorn on 127.0.0.1 (a free port, in a child process) and
measures with httpx over one keep-alive connection:

1. registering nodes one by one (``POST /v1/nodes``) against one ``POST /v1/fleet/apply``
   carrying the same number of nodes;
2. listing a fleet of ``--list`` nodes in one request (``GET /v1/nodes?limit=...``) and by
   paging through it with ``limit=1000``;
3. small changes (one ``POST /v1/nodes``, a fleet file of one node) into that full fleet,
   against the same changes into an empty one: how a single write scales with fleet size.

Baselines: ``GET /healthz`` (no database, no auth) and ``GET /v1/nodes/NAME``.

Figures are medians of runs made side by side in this process; nothing is asserted. Results
are printed as a Markdown table and written to ``bench/results/api_latency.json``.

    python bench/api_latency.py --quick          # seconds: 100 / 1,000 nodes
    python bench/api_latency.py                  # 1,000 / 10,000 nodes
    python bench/api_latency.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from sqlalchemy.engine import URL, make_url

from suanli import __version__
from suanli.services import bootstrap
from suanli.store import migrate
from suanli.store.db import make_engine, make_sessionmaker

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "api_latency.json"
SERVE = HERE / "_serve.py"
PG_ENV = "SUANLI_BENCH_PG_URL"

DC_NAME = "bench-dc"
DC_SPEC: dict[str, Any] = {
    "name": DC_NAME,
    "country": "CN",
    "region": "Ningxia",
    "operator": "suanli bench",
    "owner_type": "private",
}
CHIP = "H100 SXM"
RACK = 100  # nodes per fleet-file entry (one island each)
CHUNK = 1000  # nodes per fleet apply when filling the fleet to list
PAGE = 1000  # page size for the paging walk
PROBES = 200  # requests for the small-request baselines
SINGLES = 50  # single-node writes timed into a small and into a full fleet
SINGLE_APPLIES = 5  # one-node fleet files timed into an empty and into a full fleet
MAX_NODES = 10_000  # the API's largest page and largest `replicas`
START_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 300.0

console = Console()


@dataclass(frozen=True)
class Counts:
    register: int
    listed: int
    repeats: int


# --- results --------------------------------------------------------------------------------


def summary(samples_ms: list[float]) -> dict[str, float]:
    out = {
        "median_ms": statistics.median(samples_ms),
        "min_ms": min(samples_ms),
        "max_ms": max(samples_ms),
    }
    if len(samples_ms) >= 20:
        out["p95_ms"] = statistics.quantiles(samples_ms, n=20)[18]
    return out


# --- databases ------------------------------------------------------------------------------


@contextlib.contextmanager
def sqlite_database(workdir: Path) -> Iterator[str]:
    yield f"sqlite:///{workdir / 'bench.db'}"


def _libpq(url: URL) -> str:
    """A SQLAlchemy URL as a libpq connection URI (what psycopg.connect takes)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh database ``suanli_bench_<random>`` on the server, dropped afterwards."""
    base = make_url(server_url)
    maintenance = _libpq(base.set(database="postgres"))
    name = f"suanli_bench_{secrets.token_hex(4)}"
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            try:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            except psycopg.errors.SyntaxError:  # PostgreSQL < 13
                conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def prepare(url: str) -> str:
    """Migrate the empty database to head and issue the admin token; return the token."""
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        with make_sessionmaker(engine)() as session:
            token = bootstrap.ensure_admin(session)
            session.commit()
    finally:
        engine.dispose()
    if token is None:
        raise RuntimeError("the fresh database already had an admin token")
    return token


# --- the server -----------------------------------------------------------------------------


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Terminate, then kill if it does not exit in ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@contextlib.contextmanager
def running_server(url: str, home: Path) -> Iterator[str]:
    """The API in a child process over ``url``; yields its base URL (127.0.0.1)."""
    env = dict(os.environ, SUANLI_DATABASE_URL=url, SUANLI_HOME=str(home))
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(SERVE)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
        try:
            lines: queue.Queue[bytes] = queue.Queue()
            assert proc.stdout is not None
            stdout = proc.stdout

            def read() -> None:
                for line in stdout:
                    lines.put(line)
                lines.put(b"")  # end of output: the child exited

            threading.Thread(target=read, name="server-stdout", daemon=True).start()
            try:
                first = lines.get(timeout=START_TIMEOUT_S)
                port = int(json.loads(first)["port"])
            except (queue.Empty, ValueError, KeyError) as exc:
                stop(proc)
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the server did not start: {exc!r}\n{tail}") from None
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)


# --- requests -------------------------------------------------------------------------------


def check(response: httpx.Response, expected: int) -> httpx.Response:
    if response.status_code != expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}, expected {expected}: {response.text[:500]}"
        )
    return response


def fleet_file(prefix: str, first: int, count: int) -> dict[str, Any]:
    """``count`` nodes named ``<prefix>-NNNNN`` from ``first``, in racks of RACK replicas."""
    entries = []
    for start in range(first, first + count, RACK):
        entries.append(
            {
                "name": f"{prefix}-{{i:05d}}",
                "replicas": min(RACK, first + count - start),
                "first": start,
                "chip": CHIP,
                "count": 8,
                "island": f"{prefix}-rack-{start // RACK:03d}",
                "cpu_cores": 192,
            }
        )
    return {"data_centers": [{**DC_SPEC, "nodes": entries}]}


def apply_fleet(client: httpx.Client, doc: dict[str, Any], expected_created: int) -> float:
    """POST one fleet file; return the seconds it took."""
    body = json.dumps(doc).encode()
    t0 = time.perf_counter()
    response = client.post(
        "/v1/fleet/apply", content=body, headers={"content-type": "application/json"}
    )
    seconds = time.perf_counter() - t0
    created = check(response, 200).json()["created_nodes"]
    if created != expected_created:
        raise RuntimeError(f"fleet apply created {created} nodes, expected {expected_created}")
    return seconds


def node_spec(i: int) -> dict[str, Any]:
    return {
        "name": f"bench-one-{i:05d}",
        "data_center": DC_NAME,
        "chip": CHIP,
        "count": 8,
        "island": f"bench-one-rack-{i // RACK:03d}",
        "cpu_cores": 192,
    }


def timed_gets(client: httpx.Client, path: str, task: TaskID, progress: Progress) -> list[float]:
    """GET ``path`` PROBES times; the latency of each in ms."""
    samples: list[float] = []
    for _ in range(PROBES):
        t = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        check(response, 200)
        progress.advance(task)
    return samples


def timed_single_applies(
    client: httpx.Client, prefix: str, task: TaskID, progress: Progress
) -> list[float]:
    """SINGLE_APPLIES fleet files of one new node each; the time of each in ms."""
    samples: list[float] = []
    for i in range(1, SINGLE_APPLIES + 1):
        samples.append(apply_fleet(client, fleet_file(prefix, i, 1), 1) * 1000)
        progress.advance(task)
    return samples


def walk_pages(client: httpx.Client) -> tuple[int, int]:
    """Page through all nodes with limit=PAGE; return (nodes seen, requests made)."""
    after, seen, requests = 0, 0, 0
    while True:
        body = check(client.get("/v1/nodes", params={"limit": PAGE, "after": after}), 200).json()
        requests += 1
        seen += len(body["nodes"])
        if body["next_after"] is None:
            return seen, requests
        after = body["next_after"]


# --- one backend ----------------------------------------------------------------------------


def run_backend(label: str, url: str, counts: Counts, workdir: Path) -> dict[str, Any]:
    safe_url = make_url(url).render_as_string(hide_password=True)
    console.rule(f"[bold]{label}[/bold]  {safe_url}")
    t0 = time.perf_counter()
    token = prepare(url)
    migrate_s = time.perf_counter() - t0
    out: dict[str, Any] = {"database": safe_url, "migrate_and_bootstrap_s": migrate_s}
    n = counts.register

    with (
        running_server(url, workdir) as base,
        httpx.Client(
            base_url=base,
            headers={"authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_S,
        ) as client,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        check(client.post("/v1/data-centers", json=DC_SPEC), 201)

        # 0. the floor: a request with no database and no credential check
        task = progress.add_task(f"GET /healthz x {PROBES}", total=PROBES)
        out["healthz"] = {
            "requests": PROBES,
            **summary(timed_gets(client, "/healthz", task, progress)),
        }

        # small changes to an almost empty fleet, for comparison with a full one (step 3)
        task = progress.add_task("fleet apply of 1 node, empty fleet", total=SINGLE_APPLIES)
        early = timed_single_applies(client, "bench-early", task, progress)
        out["fleet_apply_one_empty"] = {"requests": SINGLE_APPLIES, **summary(early)}

        # 1a. one by one
        task = progress.add_task(f"POST /v1/nodes x {n:,}", total=n)
        latencies: list[float] = []
        t_all = time.perf_counter()
        for i in range(1, n + 1):
            spec = node_spec(i)
            t = time.perf_counter()
            response = client.post("/v1/nodes", json=spec)
            latencies.append((time.perf_counter() - t) * 1000)
            check(response, 201)
            progress.advance(task)
        one_total_s = time.perf_counter() - t_all
        out["post_one_by_one"] = {"nodes": n, "total_s": one_total_s, **summary(latencies)}
        first = latencies[:SINGLES]
        out["post_first"] = {"requests": len(first), "nodes_before": 0, **summary(first)}

        # one node read back: credential check plus one small query
        task = progress.add_task(f"GET /v1/nodes/NAME x {PROBES}", total=PROBES)
        reads = timed_gets(client, f"/v1/nodes/{node_spec(1)['name']}", task, progress)
        out["get_one_node"] = {"requests": PROBES, **summary(reads)}

        # 1b. the same number in one fleet file
        task = progress.add_task(f"POST /v1/fleet/apply ({n:,} nodes)", total=1)
        fleet_s = apply_fleet(client, fleet_file("bench-fleet", 1, n), n)
        progress.advance(task)
        out["fleet_apply"] = {"nodes": n, "total_s": fleet_s}
        out["one_by_one_over_fleet_apply"] = one_total_s / fleet_s

        # 2. fill up to counts.listed nodes, then list them
        missing = counts.listed - 2 * n - SINGLE_APPLIES
        task = progress.add_task(f"fleet apply to {counts.listed:,} nodes", total=missing)
        fill_s = 0.0
        for start in range(1, missing + 1, CHUNK):
            size = min(CHUNK, missing + 1 - start)
            fill_s += apply_fleet(client, fleet_file("bench-list", start, size), size)
            progress.advance(task, size)
        out["fill"] = {"nodes": missing, "requests": -(-missing // CHUNK), "total_s": fill_s}

        params = {"limit": counts.listed}
        warm = check(client.get("/v1/nodes", params=params), 200)
        listed = len(warm.json()["nodes"])
        if listed != counts.listed:
            raise RuntimeError(f"GET /v1/nodes returned {listed} nodes, expected {counts.listed}")
        task = progress.add_task(f"GET /v1/nodes?limit={counts.listed}", total=counts.repeats)
        samples: list[float] = []
        for _ in range(counts.repeats):
            t = time.perf_counter()
            check(client.get("/v1/nodes", params=params), 200)
            samples.append((time.perf_counter() - t) * 1000)
            progress.advance(task)
        out["list_one_request"] = {
            "nodes": counts.listed,
            "runs": counts.repeats,
            "response_bytes": len(warm.content),
            **summary(samples),
        }

        task = progress.add_task(f"paging limit={PAGE}", total=counts.repeats)
        walks: list[float] = []
        pages = 0
        for _ in range(counts.repeats):
            t = time.perf_counter()
            seen, pages = walk_pages(client)
            walks.append((time.perf_counter() - t) * 1000)
            if seen != counts.listed:
                raise RuntimeError(f"paging saw {seen} nodes, expected {counts.listed}")
            progress.advance(task)
        out["list_paged"] = {
            "nodes": counts.listed,
            "page": PAGE,
            "requests": pages,
            "runs": counts.repeats,
            **summary(walks),
        }

        # 3. small changes once the data center holds counts.listed nodes
        task = progress.add_task(f"POST /v1/nodes into {counts.listed:,} nodes", total=SINGLES)
        late: list[float] = []
        for i in range(n + 1, n + 1 + SINGLES):
            t = time.perf_counter()
            response = client.post("/v1/nodes", json=node_spec(i))
            late.append((time.perf_counter() - t) * 1000)
            check(response, 201)
            progress.advance(task)
        out["post_into_full"] = {
            "requests": SINGLES,
            "nodes_before": counts.listed,
            **summary(late),
        }
        out["post_full_over_first"] = statistics.median(late) / statistics.median(first)
        task = progress.add_task("fleet apply of 1 node, full fleet", total=SINGLE_APPLIES)
        full = timed_single_applies(client, "bench-late", task, progress)
        out["fleet_apply_one_full"] = {
            "requests": SINGLE_APPLIES,
            "nodes_before": counts.listed + SINGLES,
            **summary(full),
        }
        out["fleet_apply_one_full_over_empty"] = statistics.median(full) / statistics.median(early)
    return out


# --- report ---------------------------------------------------------------------------------


def table(results: dict[str, dict[str, Any]], counts: Counts) -> str:
    labels = list(results)
    n, listed = counts.register, counts.listed

    def row(name: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return "| " + " | ".join([name, *(cell(results[b]) for b in labels)]) + " |"

    lines = [
        "| measurement | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
        row(
            f"`GET /healthz` (no database, no auth), {PROBES} requests: median",
            lambda r: f"{r['healthz']['median_ms']:.1f} ms",
        ),
        row(
            f"`GET /v1/nodes/NAME` (auth + one node), {PROBES} requests: median",
            lambda r: f"{r['get_one_node']['median_ms']:.1f} ms",
        ),
        row(
            f"`POST /v1/nodes` one by one, {n:,} nodes: median per request",
            lambda r: f"{r['post_one_by_one']['median_ms']:.1f} ms",
        ),
        row(
            f"`POST /v1/nodes` one by one, {n:,} nodes: total",
            lambda r: f"{r['post_one_by_one']['total_s']:.2f} s",
        ),
        row(
            f"`POST /v1/fleet/apply`, {n:,} nodes in one request: total",
            lambda r: f"{r['fleet_apply']['total_s']:.2f} s",
        ),
        row(
            "one by one / fleet apply (total time)",
            lambda r: f"{r['one_by_one_over_fleet_apply']:.1f}x",
        ),
        row(
            f"`GET /v1/nodes?limit={listed}` ({listed:,} nodes): median (min-max)",
            lambda r: (
                f"{r['list_one_request']['median_ms']:.0f} ms "
                f"({r['list_one_request']['min_ms']:.0f}-{r['list_one_request']['max_ms']:.0f})"
            ),
        ),
        row(
            f"paging `limit={PAGE}` through {listed:,} nodes: median total",
            lambda r: f"{r['list_paged']['median_ms']:.0f} ms ({r['list_paged']['requests']} req)",
        ),
        row(
            f"`POST /v1/nodes`, first {SINGLES} into an empty data center: median",
            lambda r: f"{r['post_first']['median_ms']:.1f} ms",
        ),
        row(
            f"`POST /v1/nodes`, {SINGLES} into the data center holding {listed:,}: median",
            lambda r: (
                f"{r['post_into_full']['median_ms']:.1f} ms ({r['post_full_over_first']:.1f}x)"
            ),
        ),
        row(
            "`POST /v1/fleet/apply` of 1 new node, empty fleet: median",
            lambda r: f"{r['fleet_apply_one_empty']['median_ms']:.1f} ms",
        ),
        row(
            f"`POST /v1/fleet/apply` of 1 new node, fleet of {listed:,}: median",
            lambda r: (
                f"{r['fleet_apply_one_full']['median_ms']:.1f} ms "
                f"({r['fleet_apply_one_full_over_empty']:.1f}x)"
            ),
        ),
    ]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "suanli": __version__,
    }


def parse_args(argv: list[str] | None = None) -> tuple[Counts, str | None]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 / 1,000 nodes, for a smoke run")
    parser.add_argument(
        "--register", type=int, help=f"nodes to register each way [1000] (at least {SINGLES})"
    )
    parser.add_argument("--list", type=int, dest="listed", help="nodes to list [10000]")
    parser.add_argument("--repeats", type=int, default=7, help="runs of each listing [7]")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(PG_ENV),
        help=f"PostgreSQL server URL (its `postgres` database is used to create and drop a "
        f"scratch database) [env {PG_ENV}]",
    )
    args = parser.parse_args(argv)
    register = args.register or (100 if args.quick else 1000)
    listed = args.listed or (1000 if args.quick else 10_000)
    if not SINGLES <= register <= MAX_NODES // 2:
        parser.error(f"--register must be {SINGLES}..{MAX_NODES // 2}")
    least = 2 * register + SINGLE_APPLIES
    if not least <= listed <= MAX_NODES:
        parser.error(
            f"--list must be between 2 x --register + {SINGLE_APPLIES} ({least}) and {MAX_NODES}"
        )
    if not 1 <= args.repeats <= 100:
        parser.error("--repeats must be 1..100")
    return Counts(register, listed, args.repeats), args.pg_url


def main(argv: list[str] | None = None) -> None:
    counts, pg_url = parse_args(argv)
    console.print(
        f"suanli {__version__} API latency: {counts.register:,} nodes registered each way, "
        f"{counts.listed:,} listed, {counts.repeats} runs per listing; {os.cpu_count()} CPUs"
    )
    results: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="suanli-bench-") as tmp:
        sqlite_dir = Path(tmp, "sqlite")
        sqlite_dir.mkdir()
        with sqlite_database(sqlite_dir) as url:
            results["SQLite"] = run_backend("SQLite", url, counts, sqlite_dir)
        if pg_url:
            pg_dir = Path(tmp, "postgresql")
            pg_dir.mkdir()
            with postgres_database(pg_url) as url:
                results["PostgreSQL"] = run_backend("PostgreSQL", url, counts, pg_dir)
        else:
            skipped["PostgreSQL"] = f"no server given (--pg-url URL or env {PG_ENV})"
            console.print(
                f"[yellow]PostgreSQL skipped:[/yellow] pass --pg-url "
                f"postgresql://USER@HOST:PORT/postgres or set {PG_ENV} to include it"
            )

    console.print()
    print(table(results, counts))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": machine(),
                "counts": asdict(counts),
                "results": results,
                "skipped": skipped,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"\nresults written to {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
