"""Start-up time of ``suanli up``: from launching the process until ``GET /healthz`` is 200.

Two cases, ``--runs`` times each, SQLite, no embedded agent:

* first start: a fresh, empty home (runs the migrations, issues the admin token);
* restart: a home that has been started once already (schema at head, token exists).

Each run launches ``suanli up --port 0 --home HOME --no-agent`` (the ``suanli`` next to this
interpreter), reads the API address from the banner's ``export SUANLI_SERVER=...`` line,
polls ``/healthz`` on 127.0.0.1 until it answers 200, then stops the process (terminate,
kill after a timeout). Besides the launch-to-healthy time it records the launch-to-banner
time and the time the process reports itself (``is up in X s``, counted from inside the
command, so after interpreter start and imports). Medians are printed; results go to
``bench/results/startup.json``.

    python bench/startup.py            # 5 runs of each case
    python bench/startup.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from suanli import __version__

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "startup.json"
SUANLI = Path(sys.executable).parent / "suanli"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SERVER_LINE = re.compile(r"export SUANLI_SERVER=(http://127\.0\.0\.1:\d+)")
UP_LINE = re.compile(r"is up\S* in ([0-9.]+) s")

console = Console()


@dataclass(frozen=True)
class Run:
    healthy_s: float  # launch -> /healthz 200
    banner_s: float  # launch -> the export line
    self_reported_s: float | None  # "is up in X s" from the process


def stop(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """Terminate, then kill if it does not exit in ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def one_start(home: Path) -> Run:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    for key in ("SUANLI_DATABASE_URL", "SUANLI_HOST", "SUANLI_PORT"):
        env.pop(key, None)  # the fresh home's SQLite file, loopback, the port given
    cmd = [str(SUANLI), "up", "--port", "0", "--home", str(home), "--no-agent"]
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        stdout = proc.stdout

        def read() -> None:
            for line in stdout:
                lines.put(line)
            lines.put("")  # end of output: the process exited

        threading.Thread(target=read, name="up-stdout", daemon=True).start()
        deadline = t0 + START_TIMEOUT_S
        base: str | None = None
        reported: float | None = None
        while base is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                raise RuntimeError(f"no banner in {START_TIMEOUT_S:.0f} s") from None
            if not line:
                raise RuntimeError("suanli up exited:\n" + "".join(output)[-2000:])
            output.append(line)
            if found := UP_LINE.search(line):
                reported = float(found.group(1))
            if found := SERVER_LINE.search(line):
                base = found.group(1)
        banner_s = time.perf_counter() - t0
        with httpx.Client(base_url=base, timeout=5.0) as client:
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"/healthz not 200 within {START_TIMEOUT_S:.0f} s")
                time.sleep(0.005)
        return Run(time.perf_counter() - t0, banner_s, reported)
    finally:
        stop(proc)


def summarize(runs: list[Run]) -> dict[str, Any]:
    healthy = [r.healthy_s for r in runs]
    reported = [r.self_reported_s for r in runs if r.self_reported_s is not None]
    return {
        "runs": [asdict(r) for r in runs],
        "healthy_median_s": statistics.median(healthy),
        "healthy_min_s": min(healthy),
        "healthy_max_s": max(healthy),
        "banner_median_s": statistics.median(r.banner_s for r in runs),
        "self_reported_median_s": statistics.median(reported) if reported else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each case [5]")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 50:
        parser.error("--runs must be 1..50")
    if not SUANLI.exists():
        parser.error(f"{SUANLI} not found: run this with the interpreter of suanli's venv")

    console.print(f"suanli {__version__} start-up: {args.runs} runs each; {os.cpu_count()} CPUs")
    fresh: list[Run] = []
    restart: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="suanli-startup-") as tmp,
        Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()
        ) as progress,
    ):
        task = progress.add_task("first start (fresh home)", total=args.runs)
        for i in range(args.runs):
            fresh.append(one_start(Path(tmp, f"fresh-{i}")))
            progress.advance(task)
        home = Path(tmp, "existing")
        one_start(home)  # create it; not counted
        task = progress.add_task("restart (existing home)", total=args.runs)
        for _ in range(args.runs):
            restart.append(one_start(home))
            progress.advance(task)

    results = {"first_start": summarize(fresh), "restart": summarize(restart)}
    print()
    print("| case | launch -> /healthz 200, median (min-max) | launch -> banner | self-reported |")
    print("|---|---:|---:|---:|")
    for name, r in (
        ("first start (fresh home)", results["first_start"]),
        ("restart (existing home)", results["restart"]),
    ):
        reported = r["self_reported_median_s"]
        print(
            f"| {name} | {r['healthy_median_s']:.2f} s "
            f"({r['healthy_min_s']:.2f}-{r['healthy_max_s']:.2f}) | "
            f"{r['banner_median_s']:.2f} s | "
            f"{f'{reported:.2f} s' if reported is not None else 'n/a'} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "cpus": os.cpu_count(), "suanli": __version__}
    RESULTS.write_text(
        json.dumps({"machine": machine, "runs_per_case": args.runs, **results}, indent=2) + "\n"
    )
    console.print(f"\nresults written to {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
