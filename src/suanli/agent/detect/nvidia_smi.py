"""NVIDIA GPUs through the ``nvidia-smi`` command line, used when NVML cannot be opened.

The device list comes from one CSV query (:data:`QUERY`). The driver version, which that
query does not carry, is read from the banner of the plain ``nvidia-smi`` table.
"""

from __future__ import annotations

import re
from typing import Final

from suanli.agent.detect.base import (
    Device,
    Health,
    Runner,
    is_not_available,
    parse_float,
    parse_int,
)
from suanli.errors import ValidationError

NAME = "nvidia-smi"
VENDOR = "nvidia"
SOURCE = "nvidia-smi"

FIELDS: Final = (
    "index",
    "name",
    "uuid",
    "memory.total",
    "temperature.gpu",
    "utilization.gpu",
    "ecc.errors.uncorrected.volatile.total",
    "power.draw",
)
QUERY: Final = (
    "nvidia-smi",
    f"--query-gpu={','.join(FIELDS)}",
    "--format=csv,noheader,nounits",
)
TABLE: Final = ("nvidia-smi",)

_DRIVER_RE: Final = re.compile(r"Driver Version:\s*(\S+)")


def parse_query_csv(text: str) -> tuple[Device, ...]:
    """Parse the output of :data:`QUERY`; one device per non-blank line."""
    devices: list[Device] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            devices.append(_parse_row(line, lineno))
    return tuple(devices)


def _parse_row(line: str, lineno: int) -> Device:
    cells = [cell.strip() for cell in line.split(",")]
    if len(cells) != len(FIELDS):
        raise ValidationError(
            f"{SOURCE}: line {lineno} has {len(cells)} comma-separated values, expected "
            f"{len(FIELDS)} ({', '.join(FIELDS)}): {line.strip()!r}",
            field=SOURCE,
            line=lineno,
        )
    raw_index, name, raw_uuid, memory, temp, util, ecc, power = cells

    def number(raw: str, what: str) -> int | None:
        return parse_int(raw, what, source=SOURCE, line=lineno)

    index = number(raw_index, "index")
    if index is None or not name or is_not_available(name):
        raise ValidationError(
            f"{SOURCE}: line {lineno} lacks a GPU index or name: {line.strip()!r}",
            field=SOURCE,
            line=lineno,
        )
    ecc_errors = number(ecc, "ecc.errors.uncorrected.volatile.total")
    health: Health = "critical" if ecc_errors else "ok"
    return Device(
        index=index,
        vendor=VENDOR,
        name=name,
        uuid=None if is_not_available(raw_uuid) else raw_uuid,
        memory_mb=number(memory, "memory.total"),
        health=health,
        temperature_c=number(temp, "temperature.gpu"),
        utilization_pct=number(util, "utilization.gpu"),
        ecc_errors=ecc_errors,
        power_w=parse_float(power, "power.draw", source=SOURCE, line=lineno),
    )


def parse_driver_version(table: str) -> str | None:
    """The ``Driver Version:`` from the banner of the plain ``nvidia-smi`` output."""
    match = _DRIVER_RE.search(table)
    return match.group(1) if match else None


class NvidiaSmiDetector:
    """Runs :data:`QUERY`; a missing or failing ``nvidia-smi`` means "not present"."""

    name = NAME

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def detect(self) -> tuple[Device, ...] | None:
        out = self._runner(QUERY)
        if out is None:
            return None
        return parse_query_csv(out) or None

    def driver_version(self) -> str | None:
        table = self._runner(TABLE)
        return None if table is None else parse_driver_version(table)
