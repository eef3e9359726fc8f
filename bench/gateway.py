"""The gateway's overhead, side by side in one run: direct to a mock upstream, through the
suanli gateway (keys, rate limits and metering on), and through LiteLLM's proxy when a
virtualenv with ``litellm[proxy]`` is given.

Uses the peer harness in ``../shared/bench-peers`` (mock upstream and bounded load generator).
With two or more cores the gateway runs alone on CPU 1, mock and load on CPU 0 (as the peer
figures were measured). Everything binds 127.0.0.1 and is stopped at the end.

    python bench/gateway.py                          # ours vs direct
    python bench/gateway.py --litellm-venv VENV      # and LiteLLM, same mock, same load
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mock-model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) >= 2 else []


@contextlib.contextmanager
def process(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_http(url: str, key: str = "", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    headers = {"authorization": f"Bearer {key}"} if key else {}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    raise SystemExit(f"timeout waiting for {url}")


def prepare_platform(home: Path, mock_url: str) -> tuple[str, str]:
    """A database with a tenant, a rate-limited key and a deployment over the mock."""
    from suanli.domain.actor import SYSTEM
    from suanli.domain.serving import DeploymentSpec
    from suanli.domain.specs import ApiKeySpec, TenantSpec
    from suanli.services import credentials, deployments, tenants
    from suanli.store import migrate
    from suanli.store.db import make_engine, make_sessionmaker

    url = f"sqlite:///{home / 'suanli.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    with make_sessionmaker(engine)() as session:
        # limits switched on (and checked on every request), set high enough not to refuse
        tenants.create(
            session,
            SYSTEM,
            TenantSpec(name="bench", country="CN", rpm_limit=10**8, tpm_limit=10**12),
        )
        _row, key = credentials.issue_api_key(
            session, SYSTEM, "bench", ApiKeySpec(name="load", rpm_limit=10**8, tpm_limit=10**12)
        )
        deployments.create(
            session,
            SYSTEM,
            DeploymentSpec(
                model="smollm2-135m-instruct",
                name=MODEL,
                endpoints=[mock_url],
                routing="least_outstanding",
            ),
        )
        session.commit()
    engine.dispose()
    return url, key


def load(
    peers: Path, label: str, base: str, key: str, stream: bool, conc: int, n: int, pgid: int
) -> dict[str, Any]:
    cmd = [
        *pinned(0),
        sys.executable,
        str(peers / "load.py"),
        "--base-url", base,
        "--api-key", key,
        "--model", MODEL,
        "--requests", str(n),
        "--concurrency", str(conc),
        "--warmup", "50",
        "--max-seconds", "60",
        "--label", label,
    ]  # fmt: skip
    if stream:
        cmd.append("--stream")
    if pgid:
        cmd += ["--cpu-pgid", str(pgid)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
    result: dict[str, Any] = json.loads(line)
    if result.get("errors"):
        print(f"  {label}: errors {result.get('error_samples')}", file=sys.stderr)
    return result


def litellm(venv: Path, tmp: Path, mock_url: str, port: int) -> tuple[list[str], dict[str, str]]:
    config = tmp / "litellm.yaml"
    config.write_text(
        f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n"
        f"      model: openai/{MODEL}\n      api_base: {mock_url}\n      api_key: sk-mock\n"
        "litellm_settings:\n  num_retries: 0\n  request_timeout: 30\n"
        "general_settings:\n  master_key: sk-litellm-bench\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    cmd = [*pinned(1), str(venv / "bin" / "litellm"), "--config", str(config),
           "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]  # fmt: skip
    return cmd, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=Path, default=ROOT.parent / "shared" / "bench-peers")
    parser.add_argument("--litellm-venv", type=Path, default=None)
    parser.add_argument("--requests-c1", type=int, default=1000)
    parser.add_argument("--requests-c32", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per case; medians shown")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    args = parser.parse_args()
    if not (args.peers / "load.py").exists():
        raise SystemExit(f"the peer harness is not at {args.peers}; give --peers")

    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="suanli-bench-") as tmpdir,
        contextlib.ExitStack() as stack,
    ):
        tmp = Path(tmpdir)
        mock_port, gw_port = free_port(), free_port()
        mock_url = f"http://127.0.0.1:{mock_port}/v1"
        stack.enter_context(
            process(
                [
                    *pinned(0),
                    sys.executable,
                    str(args.peers / "mock_upstream.py"),
                    "--port",
                    str(mock_port),
                    "--models",
                    MODEL,
                ],
                tmp / "mock.log",
            )
        )
        wait_http(f"{mock_url}/models")
        db_url, key = prepare_platform(tmp, mock_url)
        env = os.environ | {"SUANLI_HOME": str(tmp), "SUANLI_DATABASE_URL": db_url}
        suanli = str(Path(sys.executable).parent / "suanli")
        gw_pid = stack.enter_context(
            process([*pinned(1), suanli, "gateway", "--port", str(gw_port)], tmp / "gw.log", env)
        )
        ours = f"http://127.0.0.1:{gw_port}/v1"
        wait_http(f"{ours}/models", key)
        targets = [("direct", mock_url, "sk-mock", 0), ("suanli", ours, key, gw_pid)]
        if args.litellm_venv is not None:
            ll_port = free_port()
            cmd, ll_env = litellm(args.litellm_venv, tmp, mock_url, ll_port)
            ll_pid = stack.enter_context(process(cmd, tmp / "litellm.log", ll_env))
            wait_http(f"http://127.0.0.1:{ll_port}/health/liveliness", timeout=180)
            ll_url = f"http://127.0.0.1:{ll_port}/v1"
            targets.append(("litellm", ll_url, "sk-litellm-bench", ll_pid))
        for stream in (False, True):
            for conc in (1, 32):
                base_n = args.requests_c1 if conc == 1 else args.requests_c32
                for label, url, k, pgid in targets:
                    n = base_n if label != "litellm" else max(100, base_n // 10)
                    for rep in range(args.repeats):
                        r = load(args.peers, label, url, k, stream, conc, n, pgid)
                        r["repeat"] = rep
                        results.append(r)
                        print(
                            f"{label:8} stream={stream!s:5} c={conc:<3} rps={r.get('rps')} "
                            f"p50={r.get('latency_ms', {}).get('p50')} ms",
                            file=sys.stderr,
                        )
        journal = sum(1 for _ in (tmp / "usage-journal").glob("*.jsonl"))
    if args.json:
        args.json.write_text("\n".join(json.dumps(r) for r in results) + "\n")
    report(results, journal)
    return 0


def _median(
    results: list[dict[str, Any]], label: str, stream: bool, conc: int, *path: str
) -> float | None:
    values = []
    for r in results:
        if r.get("label") == label and r.get("stream") == stream and r.get("concurrency") == conc:
            v: Any = r
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if isinstance(v, int | float):
                values.append(float(v))
    return statistics.median(values) if values else None


def report(results: list[dict[str, Any]], journals: int) -> None:
    have_ll = any(r.get("label") == "litellm" for r in results)
    print(
        "\n| mode | conc | RPS direct | RPS suanli | RPS LiteLLM | suanli / LiteLLM | "
        "added p50 ms suanli | added p50 ms LiteLLM | suanli CPU ms/req |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for stream in (False, True):
        for conc in (1, 32):
            d = _median(results, "direct", stream, conc, "rps")
            s = _median(results, "suanli", stream, conc, "rps")
            ll = _median(results, "litellm", stream, conc, "rps") if have_ll else None
            dp = _median(results, "direct", stream, conc, "latency_ms", "p50")
            sp = _median(results, "suanli", stream, conc, "latency_ms", "p50")
            lp = _median(results, "litellm", stream, conc, "latency_ms", "p50")
            cpu = _median(results, "suanli", stream, conc, "gw_cpu_ms_per_req")
            print(
                f"| {'stream' if stream else 'plain'} | {conc} | {_f(d)} | {_f(s)} | {_f(ll)} | "
                f"{_ratio(s, ll)} | {_diff(sp, dp)} | {_diff(lp, dp)} | {_f(cpu, 3)} |"
            )
    ttft_d = _median(results, "direct", True, 1, "ttft_ms", "p50")
    ttft_s = _median(results, "suanli", True, 1, "ttft_ms", "p50")
    ttft_l = _median(results, "litellm", True, 1, "ttft_ms", "p50")
    print(
        f"\nadded time to first token at concurrency 1 (p50): suanli {_diff(ttft_s, ttft_d)} ms"
        + (f", LiteLLM {_diff(ttft_l, ttft_d)} ms" if have_ll else "")
    )
    usage = _median(results, "suanli", True, 1, "usage_seen")
    print(f"usage chunk seen by the client on suanli streams: {usage}; journals left: {journals}")


def _f(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.1f}x"


def _diff(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a - b:+.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
