"""The shapes every hardware detector shares: devices, the host, the driver interface.

A detector is asked for its devices and answers ``None`` when its vendor is not present
on this machine, so :func:`suanli.agent.detect.host.detect_host` can fall through to the
next one. Commands are run through a :data:`Runner`, which tests replace with recorded
output instead of patching ``subprocess``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from suanli.errors import ValidationError

Health = Literal["ok", "warning", "critical", "unknown"]
HEALTH_VALUES: Final[frozenset[str]] = frozenset({"ok", "warning", "critical", "unknown"})

COMMAND_TIMEOUT_S: Final = 30.0

# What vendor tools print in place of a value they cannot give.
_NOT_AVAILABLE: Final[frozenset[str]] = frozenset(
    {"", "-", "na", "n/a", "not supported", "unknown error", "insufficient permissions"}
)


@dataclass(frozen=True, slots=True)
class Device:
    """One accelerator. ``name`` is exactly what the vendor tool prints."""

    index: int
    vendor: str
    name: str
    uuid: str | None
    memory_mb: int | None
    health: str
    temperature_c: int | None = None
    utilization_pct: int | None = None
    ecc_errors: int | None = None
    power_w: float | None = None

    def __post_init__(self) -> None:
        if self.health not in HEALTH_VALUES:
            raise ValidationError(
                f"device {self.index}: health {self.health!r} is not one of "
                f"{', '.join(sorted(HEALTH_VALUES))}",
                field="health",
            )


@dataclass(frozen=True, slots=True)
class HostInfo:
    """What a node reports about itself when it registers."""

    hostname: str
    cpu_model: str
    cpu_cores: int
    memory_mb: int
    detector: str
    devices: tuple[Device, ...]
    driver_version: str | None = None


class Detector(Protocol):
    """One way of finding accelerators. ``detect`` returns ``None`` when absent."""

    name: str

    def detect(self) -> tuple[Device, ...] | None: ...

    def driver_version(self) -> str | None: ...


Runner = Callable[[Sequence[str]], str | None]
"""Runs a command and returns its stdout, or ``None`` when it is missing or fails."""


def run_command(argv: Sequence[str]) -> str | None:
    """The real :data:`Runner`: run ``argv`` without a shell and return stdout."""
    if not argv or shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout


def is_not_available(raw: str) -> bool:
    """True for ``[N/A]``, ``N/A``, ``[Not Supported]``, ``-`` and the like."""
    return raw.strip().strip("[]").strip().lower() in _NOT_AVAILABLE


def parse_int(raw: str, what: str, *, source: str, line: int | None = None) -> int | None:
    """An integer field, ``None`` when the tool says it is not available."""
    if is_not_available(raw):
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise ValidationError(
            f"{source}: {what} {raw.strip()!r} is not an integer", field=source, line=line
        ) from None


def parse_float(raw: str, what: str, *, source: str, line: int | None = None) -> float | None:
    """A decimal field, ``None`` when the tool says it is not available."""
    if is_not_available(raw):
        return None
    try:
        return float(raw.strip())
    except ValueError:
        raise ValidationError(
            f"{source}: {what} {raw.strip()!r} is not a number", field=source, line=line
        ) from None
