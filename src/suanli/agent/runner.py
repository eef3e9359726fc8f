"""The node agent loop: detect hardware, register, heartbeat; re-register when forgotten.

Transient failures (server restarting, network) are retried with capped exponential
backoff; a refusal that retrying cannot fix (bad token, unknown data center) stops the agent
with the server's message.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

from suanli.agent.detect import HostInfo, detect_host
from suanli.agent.serving import ReplicaManager
from suanli.client import ApiClient, ApiError
from suanli.domain.agent import DeviceReport, Heartbeat, Registration
from suanli.domain.serving import ReplicaOrder

log = logging.getLogger("suanli.agent")
SERVING_POLL_S = 0.5  # how often replicas are checked between heartbeats


def default_node_name(hostname: str | None = None) -> str:
    """A valid node name from the host name: lower case, [a-z0-9.-], at most 63 chars."""
    name = re.sub(r"[^a-z0-9.-]+", "-", (hostname or socket.gethostname()).lower()).strip("-.")
    return (name or "node")[:63]


def _chip_of(host: HostInfo) -> str | None:
    from suanli.catalog.chips import load_catalog

    for device in host.devices:
        chip = load_catalog().find(device.name)
        if chip is not None:
            return chip.model
    return None


def _devices(host: HostInfo) -> list[DeviceReport]:
    return [
        DeviceReport(
            index=d.index,
            name=d.name,
            uuid=d.uuid,
            memory_mb=d.memory_mb,
            health=d.health if d.health in ("ok", "warning", "critical") else "unknown",
            temperature_c=d.temperature_c,
            utilization_pct=d.utilization_pct,
            ecc_errors=d.ecc_errors,
        )
        for d in host.devices
    ]


@dataclass
class AgentConfig:
    name: str
    data_center: str = "local"
    island: str = ""
    interval_s: float | None = None  # None: use what the server says
    max_backoff_s: float = 30.0
    qualify: bool = True  # run the acceptance suite when the node is new or repaired
    qualify_level: str = "standard"
    qualify_backend: str = "auto"
    qualify_time_scale: float = 1.0
    qualify_thresholds: Path | None = None  # a thresholds file; None: the packaged defaults
    serve_dir: Path | None = None  # run model replicas here; None: this agent serves nothing
    serve_host: str = "127.0.0.1"  # the address engines bind and the gateways call
    drain_grace_s: float = 30.0


class Agent:
    def __init__(
        self,
        client: ApiClient,
        config: AgentConfig,
        detect: Callable[[], HostInfo] = detect_host,
        suite_backend: Callable[[], Any] | None = None,
        thresholds: Any = None,
    ) -> None:
        """``suite_backend`` builds the qualification backend (default: by config name);
        tests pass one with injected faults."""
        self.client = client
        self.config = config
        self.detect = detect
        self.suite_backend = suite_backend
        self.thresholds = thresholds  # None: the packaged defaults, or config.qualify_thresholds
        self.stop_event = threading.Event()
        self.interval_s = config.interval_s or 5.0
        self.registered = threading.Event()
        self.chip: str | None = None
        self.state = ""
        self._suite: threading.Thread | None = None
        self.suite_error: Exception | None = None
        self.serving: ReplicaManager | None = None
        if config.serve_dir is not None:
            self.serving = ReplicaManager(
                config.serve_dir, config.serve_host, drain_grace_s=config.drain_grace_s
            )

    def register(self) -> str:
        host = self.detect()
        reg = Registration(
            name=self.config.name,
            data_center=self.config.data_center,
            hostname=host.hostname,
            island=self.config.island,
            cpu_model=host.cpu_model[:200],
            cpu_cores=max(1, host.cpu_cores),
            memory_mb=max(1, host.memory_mb),
            detector=host.detector,
            driver_version=host.driver_version,
            devices=_devices(host),
        )
        reply = self.client.post("/v1/agent/register", reg.model_dump(mode="json"))
        if self.config.interval_s is None:
            self.interval_s = float(reply["heartbeat_interval_s"])
        self.chip = _chip_of(host)
        self.state = str(reply["state"])
        self.registered.set()
        log.info("registered node %s (%s), state %s", reply["node"], host.detector, self.state)
        if self.config.qualify and self.state in ("registered", "qualifying"):
            self._start_suite("acceptance")
        return self.state

    def beat(self) -> str:
        reports = self.serving.reports() if self.serving is not None else None
        beat = Heartbeat(node=self.config.name, devices=_devices(self.detect()), replicas=reports)
        try:
            reply = self.client.post("/v1/agent/heartbeat", beat.model_dump(mode="json"))
        except ApiError as exc:
            if exc.status in (404, 409, 422):  # forgotten or hardware changed: register again
                return self.register()
            raise
        self.state = str(reply["state"])
        if self.serving is not None:
            orders = [ReplicaOrder.model_validate(o) for o in reply.get("replicas", [])]
            self.serving.reconcile(orders)
        if self.config.qualify and reply.get("health_check_due"):
            self._start_suite("health")
        return self.state

    def _start_suite(self, kind: str) -> None:
        """Run the suite in its own thread, so that heartbeats go on meanwhile."""
        if self._suite is not None and self._suite.is_alive():
            return
        self._suite = threading.Thread(
            target=self.qualify, args=(kind,), name="qualify", daemon=True
        )
        self._suite.start()

    def wait_for_suite(self, timeout: float | None = None) -> None:
        if self._suite is not None:
            self._suite.join(timeout)

    def qualify(self, kind: str = "acceptance") -> str:
        """Run the suite here and report it; the server moves the node accordingly."""
        from suanli.catalog.chips import load_catalog
        from suanli.qualify.backends import make_backend
        from suanli.qualify.model import Level
        from suanli.qualify.runner import run_suite
        from suanli.qualify.thresholds import load_thresholds

        name = self.config.name
        level = self.config.qualify_level if kind == "acceptance" else "quick"
        try:
            if kind == "acceptance":
                self.client.post(f"/v1/nodes/{name}/qualification/start")
            chip = load_catalog().find(self.chip) if self.chip else None
            if self.suite_backend is not None:
                backend = self.suite_backend()
            else:
                backend = make_backend(self.config.qualify_backend)  # type: ignore[arg-type]
            report = run_suite(
                backend,
                cast(Level, level),
                chip,
                self.thresholds or load_thresholds(self.config.qualify_thresholds),
                time_scale=self.config.qualify_time_scale,
            )
            reply = self.client.post(
                f"/v1/nodes/{name}/qualifications", {"kind": kind, "report": report.to_json()}
            )
        except (ApiError, httpx.TransportError) as exc:
            self.suite_error = exc
            log.warning("%s suite not reported: %s", kind, exc)
            return self.state
        self.state = str(reply["node_state"])
        log.info(
            "%s suite (%s): %s; node %s is %s", kind, level, reply["summary"], name, self.state
        )
        return self.state

    def run(self) -> None:
        """Register, then heartbeat until ``stop()``; raises ApiError on a fatal refusal."""
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                if not self.registered.is_set():
                    self.register()
                else:
                    self.beat()
                backoff = 1.0
                wait = self.interval_s
            except httpx.TransportError as exc:
                log.warning("server unreachable (%s); retrying in %.0f s", exc, backoff)
                wait, backoff = backoff, min(backoff * 2, self.config.max_backoff_s)
            except ApiError as exc:
                if exc.status in (401, 403, 404, 422):
                    raise
                log.warning("server answered %s; retrying in %.0f s", exc, backoff)
                wait, backoff = backoff, min(backoff * 2, self.config.max_backoff_s)
            self._idle(wait)

    def _idle(self, wait: float) -> None:
        """Wait for the next beat, watching the replicas: a change is reported at once."""
        deadline = time.monotonic() + wait
        while not self.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop_event.wait(min(left, SERVING_POLL_S))
            if self.serving is not None and self.serving.poll() and self.registered.is_set():
                return

    def stop(self) -> None:
        self.stop_event.set()
        if self.serving is not None:
            self.serving.stop_all()
