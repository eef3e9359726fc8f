"""The replica supervisor against a real (fake) engine process and a manual clock."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from suanli.engines import LaunchSpec, Replica, ReplicaState, RestartPolicy, free_port
from suanli.engines.vllm import VllmAdapter
from suanli.errors import ConflictError

pytestmark = pytest.mark.slow

FAKE_ENGINE = Path(__file__).with_name("fake_engine.py")
S = ReplicaState
Make = Callable[..., Replica]


class FakeEngine(VllmAdapter):
    """vLLM's health and metrics logic, launching the fake engine script instead."""

    name = "fake"

    def __init__(self, *flags: str) -> None:
        super().__init__()
        self.flags = flags

    def command(self, spec: LaunchSpec, run_dir: Path | None = None) -> list[str]:
        self.validate(spec)
        return [sys.executable, str(FAKE_ENGINE), "--port", str(spec.port), *self.flags]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=2) as client:
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(tmp_path: Path, client: httpx.Client, clock: Clock) -> Iterator[Make]:
    made: list[Replica] = []

    def make(*flags: str, **policy: Any) -> Replica:
        spec = LaunchSpec("fake", "/models/fake", port=free_port(), devices=(0,))
        replica = Replica(
            FakeEngine(*flags),
            spec,
            tmp_path / f"replica-{len(made)}",
            client,
            policy=RestartPolicy(**policy),
            clock=clock,
        )
        made.append(replica)
        return replica

    yield make
    for replica in made:
        replica.stop()


def poll_until(replica: Replica, *states: ReplicaState, timeout: float = 10.0) -> ReplicaState:
    """Poll (in real time, the clock standing still) until one of ``states``."""
    deadline = time.monotonic() + timeout
    while (state := replica.poll()) not in states:
        assert time.monotonic() < deadline, f"still {state}, waiting for {states}"
        time.sleep(0.02)
    return state


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def group(pid: int) -> list[int]:
    return [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]


def test_starts_becomes_ready_and_stops_with_its_whole_group(make: Make, clock: Clock) -> None:
    replica = make("--spawn-child")
    assert replica.start() is S.STARTING
    assert replica.endpoint == f"http://127.0.0.1:{replica.spec.port}/v1"
    assert poll_until(replica, S.READY, S.CRASHED) is S.READY
    assert replica.pid is not None
    pids = group(replica.pid)
    assert len(pids) == 2  # the engine and its worker
    with pytest.raises(ConflictError):
        replica.start()
    assert replica.stop() is S.STOPPED
    assert all(gone(pid) for pid in pids)
    assert replica.pid is None
    assert replica.last_exit_code == -15
    assert "fake engine listening" in replica.log_path.read_text()


def test_crash_backoff_restart_delays_then_failed(make: Make, clock: Clock) -> None:
    replica = make("--crash-after", "0")
    replica.start()
    delays = []
    for attempt in range(1, 6):
        assert poll_until(replica, S.CRASHED) is S.CRASHED
        assert replica.last_exit_code == 3
        assert replica.last_error is not None
        assert replica.last_error.splitlines()[0] == "exited with code 3"
        assert "fatal: simulated engine failure" in replica.last_error
        if attempt == 5:
            break
        assert replica.restart_at is not None
        delay = replica.restart_at - clock.now
        delays.append(delay)
        assert replica.poll() is S.BACKOFF
        clock.advance(delay - 0.01)
        assert replica.poll() is S.BACKOFF
        clock.advance(0.01)
        assert replica.poll() is S.STARTING
        assert replica.restarts == attempt
    assert delays == [1, 2, 4, 8]
    assert replica.poll() is S.FAILED  # five crashes in a row, never ready
    assert replica.restarts == 4
    assert replica.pid is None
    assert replica.restart_at is None
    clock.advance(3600)
    assert replica.poll() is S.FAILED


def test_backoff_is_capped_and_starts_over_after_a_stable_run(make: Make, clock: Clock) -> None:
    replica = make("--crash-after", "0.4", backoff_max_s=1.5)

    def crash_delay(stay_ready_s: float) -> float:
        assert poll_until(replica, S.READY, S.CRASHED) is S.READY
        clock.advance(stay_ready_s)
        assert poll_until(replica, S.CRASHED) is S.CRASHED
        assert replica.restart_at is not None
        delay = replica.restart_at - clock.now
        clock.advance(delay)
        assert poll_until(replica, S.STARTING) is S.STARTING
        return delay

    replica.start()
    assert crash_delay(0) == 1
    assert crash_delay(59) == 1.5  # 2, capped; 59 s ready is not yet stable
    assert crash_delay(60) == 1  # stable for 60 s: back to the first delay
    assert replica.restarts == 3
    assert replica.state is S.STARTING  # crashes after ready never make it fail


def test_a_start_that_never_turns_healthy_is_killed_as_a_crash(make: Make, clock: Clock) -> None:
    replica = make("--never-healthy", "--spawn-child", start_timeout_s=30)
    replica.start()
    time.sleep(0.3)  # let it listen, answering 503
    assert replica.poll() is S.STARTING
    assert replica.pid is not None
    pids = group(replica.pid)
    clock.advance(29.9)
    assert replica.poll() is S.STARTING
    clock.advance(0.1)
    assert replica.poll() is S.CRASHED
    assert all(gone(pid) for pid in pids)
    assert replica.last_error is not None
    assert replica.last_error.startswith("not healthy within 30 s")
    assert replica.poll() is S.BACKOFF


def test_drain_waits_for_running_requests_until_the_grace_period(make: Make, clock: Clock) -> None:
    busy = make("--running", "2")
    idle = make()
    busy.start()
    idle.start()
    assert poll_until(busy, S.READY) is S.READY
    assert poll_until(idle, S.READY) is S.READY

    assert idle.drain(30) is S.DRAINING
    assert idle.poll() is S.STOPPED  # nothing running: no need to wait

    assert busy.pid is not None
    pid = busy.pid
    assert busy.drain(30) is S.DRAINING
    clock.advance(29)
    assert busy.poll() is S.DRAINING  # two requests still running
    clock.advance(1)
    assert busy.poll() is S.STOPPED
    assert gone(pid)
    clock.advance(3600)
    assert busy.poll() is S.STOPPED  # a stopped replica never restarts


def test_an_engine_ignoring_sigterm_is_killed_with_its_group(make: Make, clock: Clock) -> None:
    replica = make("--ignore-sigterm", "--spawn-child", stop_timeout_s=0.3)
    replica.start()
    assert poll_until(replica, S.READY) is S.READY
    assert replica.pid is not None
    pids = group(replica.pid)
    started = time.monotonic()
    replica.stop()
    assert time.monotonic() - started < 3
    assert replica.last_exit_code == -9
    assert all(gone(pid) for pid in pids)


def test_draining_a_replica_that_is_not_serving_stops_it(make: Make, clock: Clock) -> None:
    replica = make("--crash-after", "0")
    replica.start()
    assert poll_until(replica, S.CRASHED) is S.CRASHED
    assert replica.poll() is S.BACKOFF
    assert replica.drain(30) is S.STOPPED
    clock.advance(100)
    assert replica.poll() is S.STOPPED
    assert replica.start() is S.STARTING  # a stopped replica may start again, counters reset
    assert replica.restarts == 0


def test_a_missing_executable_is_a_crash_with_the_reason(
    tmp_path: Path, client: httpx.Client
) -> None:
    spec = LaunchSpec("m", "/models/m", port=free_port(), devices=(0,))
    clock = Clock()
    replica = Replica(VllmAdapter("/nonexistent/vllm"), spec, tmp_path, client, clock=clock)
    assert replica.start() is S.CRASHED
    assert replica.last_error is not None
    assert replica.last_error.startswith("cannot start /nonexistent/vllm")
    assert replica.poll() is S.BACKOFF
    assert "suanli: starting vllm: /nonexistent/vllm serve" in replica.log_path.read_text()


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
