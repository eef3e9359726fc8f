"""One engine process per replica, kept alive by a non-blocking state machine.

The node agent calls :meth:`Replica.poll` periodically; each call looks at the process and
the engine's health once and moves the state on::

    starting ──healthy──> ready ──exit──> crashed ──> backoff ──delay──> starting
        │                                    │
        └─ exit, or not healthy within       └─> failed  (after N crashes in a row that
           start_timeout_s: killed, crashed                never reached ready)

    drain(grace_s): ready ──> draining ──idle, grace over, or exit──> stopped
    stop():         any ──> stopped

Restart delays double from ``backoff_initial_s`` up to ``backoff_max_s`` and start over once a
replica has stayed ready for ``stable_after_s``. The process runs in its own session (so its
own process group) with stdout and stderr appended to ``engine.log`` in the run directory;
stopping signals the whole group: SIGTERM, then SIGKILL after ``stop_timeout_s``.

The state machine's times come from the injected clock (``now`` arguments or ``clock``);
only the wait for a stopping process uses real time. Not thread-safe: one caller polls.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import httpx
import psutil

from suanli.engines.base import EngineAdapter, LaunchSpec
from suanli.errors import ConflictError

LOG_NAME = "engine.log"
_TAIL_BYTES = 64 * 1024


class ReplicaState(StrEnum):
    STOPPED = "stopped"  # not started yet, or stopped on purpose
    STARTING = "starting"
    READY = "ready"
    CRASHED = "crashed"  # seen for one poll, then backoff or failed
    BACKOFF = "backoff"
    FAILED = "failed"
    DRAINING = "draining"


@dataclass(frozen=True)
class RestartPolicy:
    start_timeout_s: float = 600.0  # loading a large model takes minutes
    stop_timeout_s: float = 10.0
    max_start_failures: int = 5  # crashes in a row that never reached ready -> failed
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    stable_after_s: float = 60.0  # ready this long: the next crash backs off from the start
    jitter: float = 0.0  # 0.1: each delay is stretched by up to 10 %
    log_tail_lines: int = 10


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (another process may take it later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Replica:
    """Owns one engine process: start, health, restart with backoff, drain, stop."""

    def __init__(
        self,
        adapter: EngineAdapter,
        spec: LaunchSpec,
        run_dir: Path,
        client: httpx.Client,
        *,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        base_env: Mapping[str, str] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.adapter = adapter
        self.spec = spec
        self.run_dir = run_dir
        self.client = client
        self.policy = policy or RestartPolicy()
        self.clock = clock
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.rand = rand
        self.state = ReplicaState.STOPPED
        self.restarts = 0  # launches after the first one
        self.last_exit_code: int | None = None  # negative: killed by that signal
        self.last_error: str | None = None
        self.restart_at: float | None = None  # in backoff: when the next start is due
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._ready_at: float | None = None
        self._drain_until = 0.0
        self._log_offset = 0
        self._start_failures = 0
        self._crashes = 0  # since the replica was last stable

    # -- what the control plane reads -----------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def endpoint(self) -> str:
        return self.adapter.base_url(self.spec)

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_NAME

    # -- commands -------------------------------------------------------------------------

    def start(self, now: float | None = None) -> ReplicaState:
        """Launch the engine; a stopped or failed replica starts over with fresh counters."""
        if self.state not in (ReplicaState.STOPPED, ReplicaState.FAILED):
            raise ConflictError(f"replica {self.spec.served_name!r} is {self.state}, not stopped")
        self.restarts = self._start_failures = self._crashes = 0
        self.last_exit_code = self.last_error = None
        self._launch(self._now(now))
        return self.state

    def poll(self, now: float | None = None) -> ReplicaState:
        """Advance the state machine once: at most one health (or idleness) check, plus one
        stop when a start timed out or a drain ended."""
        now = self._now(now)
        state = self.state
        if state in (ReplicaState.STARTING, ReplicaState.READY):
            self._watch(now)
        elif state is ReplicaState.CRASHED:
            failed = self._start_failures >= self.policy.max_start_failures
            self.state = ReplicaState.FAILED if failed else ReplicaState.BACKOFF
            if failed:
                self.restart_at = None
        elif state is ReplicaState.DRAINING:
            self._drain_step(now)
        due = self.restart_at is not None and now >= self.restart_at
        if self.state is ReplicaState.BACKOFF and due:
            self.restarts += 1
            self._launch(now)
        return self.state

    def drain(self, grace_s: float, now: float | None = None) -> ReplicaState:
        """Stop taking work, then stop once idle or after ``grace_s``; a replica that is not
        serving stops at once."""
        now = self._now(now)
        if self.state is ReplicaState.READY:
            self.state = ReplicaState.DRAINING
            self._drain_until = now + grace_s
        elif self.state is ReplicaState.DRAINING:
            self._drain_until = min(self._drain_until, now + grace_s)
        else:
            self.stop()
        return self.state

    def stop(self) -> ReplicaState:
        """Stop now: SIGTERM to the process group, SIGKILL after ``stop_timeout_s``."""
        self._terminate()
        self.state = ReplicaState.STOPPED
        self.restart_at = None
        return self.state

    # -- the machine ----------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    def _launch(self, now: float) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.adapter.prepare(self.spec, self.run_dir)
        argv = self.adapter.command(self.spec, self.run_dir)
        env = self.adapter.environment(self.spec, self.base_env, self.run_dir)
        cwd = self.adapter.working_directory(self.spec, self.run_dir)
        self._started_at, self._ready_at, self.restart_at = now, None, None
        self.state = ReplicaState.STARTING
        with self.log_path.open("ab") as log:
            log.write(f"--- suanli: starting {self.adapter.name}: {' '.join(argv)}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            try:
                self._proc = subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                self._proc = None
                self._crashed(now, None, f"cannot start {argv[0]}: {exc}")

    def _watch(self, now: float) -> None:
        assert self._proc is not None
        if _exited(self._proc):
            code = self._reap()
            self._crashed(now, code, _exit_reason(code))
        elif self.state is ReplicaState.STARTING:
            if self.adapter.check_health(self.client, self.spec):
                self.state = ReplicaState.READY
                self._ready_at = now
                self._start_failures = 0
            elif now - self._started_at >= self.policy.start_timeout_s:
                self._terminate()
                timeout = self.policy.start_timeout_s
                self._crashed(now, self.last_exit_code, f"not healthy within {timeout:g} s")
        elif self._stable(now):
            self._crashes = 0

    def _stable(self, now: float) -> bool:
        return self._ready_at is not None and now - self._ready_at >= self.policy.stable_after_s

    def _crashed(self, now: float, code: int | None, reason: str) -> None:
        if self._stable(now):
            self._crashes = 0
        if self._ready_at is None:
            self._start_failures += 1
        self._crashes += 1
        self.last_exit_code = code
        tail = self._log_tail()
        self.last_error = f"{reason}\n{tail}" if tail else reason
        delay = self.policy.backoff_initial_s * 2.0 ** min(self._crashes - 1, 32)
        delay = min(delay, self.policy.backoff_max_s) * (1 + self.policy.jitter * self.rand())
        self.restart_at = now + delay
        self.state = ReplicaState.CRASHED

    def _drain_step(self, now: float) -> None:
        assert self._proc is not None
        if _exited(self._proc):
            self.last_exit_code = self._reap()
            self.state = ReplicaState.STOPPED
        elif now >= self._drain_until or self.adapter.is_idle(self.client, self.spec) is True:
            self.stop()

    # -- processes ------------------------------------------------------------------------

    def _terminate(self) -> None:
        """Stop the whole process group and reap the engine (blocks, in real time)."""
        proc = self._proc
        if proc is None:
            return
        if not _exited(proc):
            group = _group_of(proc.pid)
            _signal_group(proc.pid, signal.SIGTERM)
            if not _wait_gone(proc, group, self.policy.stop_timeout_s):
                _signal_group(proc.pid, signal.SIGKILL)
                _wait_gone(proc, group, 5.0)
        self.last_exit_code = self._reap()

    def _reap(self) -> int:
        """Kill what is left of the group (workers may outlive the engine, holding device
        memory), then collect the engine's exit status. The engine is not reaped before
        this, so its id, which names the group, cannot have been reused."""
        assert self._proc is not None
        proc, self._proc = self._proc, None
        _signal_group(proc.pid, signal.SIGKILL)
        return proc.wait()

    def _log_tail(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_offset, size - _TAIL_BYTES))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if line.strip()]
        return "\n".join(lines[-self.policy.log_tail_lines :])


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _group_of(pid: int) -> list[psutil.Process]:
    """The engine and its descendants still in its process group."""
    try:
        leader = psutil.Process(pid)
        members = [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = []
    for proc in members:
        with contextlib.suppress(OSError):
            if os.getpgid(proc.pid) == pid:
                found.append(proc)
    return found


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the engine has exited, without reaping it."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped elsewhere
        return proc.poll() is not None


def _wait_gone(
    proc: subprocess.Popen[bytes], group: list[psutil.Process], timeout_s: float
) -> bool:
    deadline = time.monotonic() + timeout_s
    while not _exited(proc) or any(_alive(p) for p in group):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
