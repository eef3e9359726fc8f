"""The host itself: name, CPU model, logical core count and memory, read from ``/proc``.

Every reader takes ``proc_root`` (the directory that holds ``proc/``), so tests point it
at a fixture tree instead of the running machine.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from suanli.errors import ValidationError

_MODEL_KEYS: Final = ("model name", "Hardware", "cpu model", "Processor")
# lscpu's names for Arm cores that print no "model name" (implementer, part).
_ARM_PARTS: Final[dict[tuple[str, str], str]] = {
    ("0x48", "0xd01"): "Kunpeng-920",
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd4f"): "Neoverse-V2",
}
UNKNOWN_MODEL: Final = "unknown"


@dataclass(frozen=True, slots=True)
class CpuInfo:
    hostname: str
    model: str
    cores: int
    memory_mb: int


def read_cpu_info(proc_root: Path = Path("/")) -> CpuInfo:
    proc = proc_root / "proc"
    model, processors = parse_cpuinfo(_read(proc / "cpuinfo") or "")
    return CpuInfo(
        hostname=read_hostname(proc_root),
        model=model,
        cores=processors or os.cpu_count() or psutil.cpu_count() or 1,
        memory_mb=_memory_mb(proc),
    )


def parse_cpuinfo(text: str) -> tuple[str, int]:
    """The CPU model and the number of ``processor`` entries in ``/proc/cpuinfo``."""
    fields: dict[str, str] = {}
    processors = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            processors += 1
        fields.setdefault(key, value)
    for key in _MODEL_KEYS:
        if fields.get(key):
            return fields[key], processors
    arm = (fields.get("CPU implementer", ""), fields.get("CPU part", ""))
    return _ARM_PARTS.get(arm, UNKNOWN_MODEL), processors


def parse_meminfo(text: str) -> int:
    """``MemTotal`` of ``/proc/meminfo`` in MiB."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) != 3 or parts[2] != "kB" or not parts[1].isdigit():
                raise ValidationError(
                    f"/proc/meminfo: line {lineno} should read 'MemTotal: <n> kB', got "
                    f"{line.strip()!r}",
                    field="meminfo",
                    line=lineno,
                )
            return int(parts[1]) // 1024
    raise ValidationError("/proc/meminfo: no MemTotal line", field="meminfo")


def read_hostname(proc_root: Path = Path("/")) -> str:
    name = (_read(proc_root / "proc" / "sys" / "kernel" / "hostname") or "").strip()
    return name or socket.gethostname()


def _memory_mb(proc: Path) -> int:
    text = _read(proc / "meminfo")
    if text is None:
        return psutil.virtual_memory().total // (1024 * 1024)
    return parse_meminfo(text)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
