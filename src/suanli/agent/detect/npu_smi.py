"""Huawei Ascend NPUs through ``npu-smi info``.

``npu-smi info`` prints a box-drawn table with two rows per chip::

    | NPU   Name     | Health  | Power(W)   Temp(C)           Hugepages-Usage(page) |
    | Chip           | Bus-Id  | AICore(%)  Memory-Usage(MB)  HBM-Usage(MB)         |

(columns narrowed here). A3 machines print ``Chip  Phy-ID`` in the second header. The
memory of a chip is the total of its last "used / total" column: ``HBM-Usage(MB)``
where the chip has HBM, else ``Memory-Usage(MB)``. The process table that follows the
device table is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final

from suanli.agent.detect.base import Device, Health, Runner, parse_float, parse_int
from suanli.errors import ValidationError

NAME = "npu-smi"
VENDOR = "huawei"
SOURCE = "npu-smi info"
COMMAND: Final = ("npu-smi", "info")

HEALTH_MAP: Final[dict[str, Health]] = {
    "ok": "ok",
    "warning": "warning",
    "alarm": "critical",
    "critical": "critical",
}

_VERSION_RE: Final = re.compile(r"\bVersion:\s*(\S+)")
_USAGE_RE: Final = re.compile(r"(\d+)\s*/\s*(\d+)")
_PROCESS_MARKERS: Final = ("Process id", "No running processes")


@dataclass(frozen=True, slots=True)
class _Row:
    lineno: int
    cells: tuple[str, ...]


def parse_npu_smi_info(text: str) -> tuple[Device, ...]:
    """Parse the whole output of ``npu-smi info`` into one :class:`Device` per chip."""
    lines = text.splitlines()
    header = _find_header(lines)
    rows = _device_rows(lines, header + 2)
    if len(rows) % 2:
        last = rows[-1]
        raise ValidationError(
            f"{SOURCE}: line {last.lineno} starts an NPU entry that has no second "
            f"(Chip / Bus-Id) row",
            field=SOURCE,
            line=last.lineno,
        )
    devices = [_parse_pair(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    if len({d.index for d in devices}) != len(devices):
        # Several chips per NPU and no Phy-ID column: number them in printed order.
        devices = [replace(d, index=i) for i, d in enumerate(devices)]
    return tuple(devices)


def parse_version(text: str) -> str | None:
    """The driver version from the ``| npu-smi X  Version: X |`` banner."""
    match = _VERSION_RE.search(text)
    return match.group(1) if match else None


def _cells(line: str) -> tuple[str, ...]:
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|"))


def _find_header(lines: list[str]) -> int:
    for i, line in enumerate(lines):
        cells = _cells(line)
        if len(cells) >= 2 and cells[0].startswith("NPU") and cells[1] == "Health":
            if i + 1 >= len(lines) or "Bus-Id" not in lines[i + 1]:
                raise ValidationError(
                    f"{SOURCE}: line {i + 2} should be the '| Chip | Bus-Id | ...' header",
                    field=SOURCE,
                    line=i + 2,
                )
            return i
    raise ValidationError(
        f"{SOURCE}: no device table found (expected a '| NPU  Name | Health | ...' header)",
        field=SOURCE,
    )


def _device_rows(lines: list[str], start: int) -> list[_Row]:
    rows: list[_Row] = []
    for i in range(start, len(lines)):
        line = lines[i].strip()
        if not line or line.startswith("+"):
            continue
        if any(marker in line for marker in _PROCESS_MARKERS):
            break
        lineno = i + 1
        cells = _cells(line)
        if not line.startswith("|") or len(cells) != 3:
            raise ValidationError(
                f"{SOURCE}: line {lineno} is not a three-column device row: {line!r}",
                field=SOURCE,
                line=lineno,
            )
        rows.append(_Row(lineno, cells))
    return rows


def _parse_pair(first: _Row, second: _Row) -> Device:
    npu_cell, health_cell, sensors = first.cells
    chip_cell, _bus_id, usage = second.cells

    ids = npu_cell.split()
    if len(ids) < 2:
        raise ValidationError(
            f"{SOURCE}: line {first.lineno} should start with an NPU id and a name, "
            f"got {npu_cell!r}",
            field=SOURCE,
            line=first.lineno,
        )
    npu_id = _int(ids[0], "NPU id", first.lineno)
    chip_ids = chip_cell.split()
    if not 1 <= len(chip_ids) <= 2:
        raise ValidationError(
            f"{SOURCE}: line {second.lineno} should start with a chip id, got {chip_cell!r}",
            field=SOURCE,
            line=second.lineno,
        )
    phy_id = _int(chip_ids[1], "Phy-ID", second.lineno) if len(chip_ids) == 2 else None

    readings = sensors.split()
    if len(readings) < 2:
        raise ValidationError(
            f"{SOURCE}: line {first.lineno} lacks Power(W) and Temp(C): {sensors!r}",
            field=SOURCE,
            line=first.lineno,
        )
    pairs = _USAGE_RE.findall(usage)
    if not pairs:
        raise ValidationError(
            f"{SOURCE}: line {second.lineno} has no 'used / total' memory column: {usage!r}",
            field=SOURCE,
            line=second.lineno,
        )
    return Device(
        index=phy_id if phy_id is not None else npu_id,
        vendor=VENDOR,
        name=" ".join(ids[1:]),
        uuid=None,
        memory_mb=int(pairs[-1][1]),
        health=HEALTH_MAP.get(health_cell.lower(), "unknown"),
        temperature_c=parse_int(readings[1], "Temp(C)", source=SOURCE, line=first.lineno),
        utilization_pct=parse_int(usage.split()[0], "AICore(%)", source=SOURCE, line=second.lineno),
        power_w=parse_float(readings[0], "Power(W)", source=SOURCE, line=first.lineno),
    )


def _int(raw: str, what: str, lineno: int) -> int:
    value = parse_int(raw, what, source=SOURCE, line=lineno)
    if value is None:
        raise ValidationError(f"{SOURCE}: line {lineno} has no {what}", field=SOURCE, line=lineno)
    return value


class NpuSmiDetector:
    """Runs ``npu-smi info``; a missing or failing tool means "not present"."""

    name = NAME

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._version: str | None = None

    def detect(self) -> tuple[Device, ...] | None:
        out = self._runner(COMMAND)
        if out is None or not out.strip():
            return None
        devices = parse_npu_smi_info(out)
        self._version = parse_version(out)
        return devices or None

    def driver_version(self) -> str | None:
        """The version printed in the banner of the last :meth:`detect`."""
        return self._version
