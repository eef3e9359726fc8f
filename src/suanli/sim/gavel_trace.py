"""Gavel's job-trace format: one job a line, ten tab-separated fields.

Fields, in order: ``job_type``, ``command``, ``working_directory``, ``num_steps_arg``,
``needs_data_dir`` (0/1), ``total_steps`` (integer), ``scale_factor`` (GPUs), the job's
``priority_weight``, its ``SLO`` (``-1`` for none) and ``arrival_time`` (seconds).
Gavel's own reader splits each line on tabs into exactly these ten fields, so no field may
hold a tab or a newline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GavelTraceJob",
    "format_trace_line",
    "job_template",
    "parse_trace_line",
    "read_gavel_trace",
    "write_gavel_trace",
]

_FIELDS = 10
_BATCH = re.compile(r"^(?P<model>.+) \(batch size (?P<batch>\d+)\)$")
# model family -> (script, working directory, steps argument, needs a data directory)
_FAMILIES: dict[str, tuple[str, str, str, bool]] = {
    "ResNet-18": ("main.py", "image_classification/cifar10", "--num_steps", True),
    "ResNet-50": ("main.py", "image_classification/imagenet", "--num_minibatches", True),
    "Transformer": ("train.py", "translation", "-step", True),
    "LM": ("main.py", "language_modeling", "--steps", True),
    "Recommendation": ("train.py", "recommendation", "-n", True),
    "A3C": ("main.py", "rl", "--max-steps", False),
    "CycleGAN": ("cyclegan.py", "cyclegan", "--n_steps", True),
}


@dataclass(frozen=True, slots=True)
class GavelTraceJob:
    """One line of a Gavel trace. ``slo`` is ``None`` where the file holds ``-1``."""

    job_type: str
    command: str
    working_directory: str
    num_steps_arg: str
    needs_data_dir: bool
    total_steps: int
    scale_factor: int
    priority_weight: float
    slo: float | None
    arrival_time: float


def job_template(job_type: str) -> tuple[str, str, str, bool]:
    """``(command, working_directory, num_steps_arg, needs_data_dir)`` for a Gavel job type.

    Unknown types get a generic template, so any job type can be written to a trace.
    """
    match = _BATCH.match(job_type)
    family = match.group("model") if match else job_type
    script, workdir, steps_arg, needs_data = _FAMILIES.get(
        family, ("main.py", family.lower().replace(" ", "_"), "--num_steps", False)
    )
    command = f"python3 {script}"
    if match:
        command += f" --batch_size {match.group('batch')}"
    return command, workdir, steps_arg, needs_data


def _text(value: str, name: str) -> str:
    if "\t" in value or "\n" in value or "\r" in value:
        raise ValueError(f"{name} may not hold a tab or a newline: {value!r}")
    return value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def format_trace_line(job: GavelTraceJob) -> str:
    """The job as one trace line (without the newline)."""
    if job.scale_factor < 1 or job.total_steps < 0:
        raise ValueError("scale_factor must be >= 1 and total_steps >= 0")
    if not math.isfinite(job.arrival_time) or job.arrival_time < 0:
        raise ValueError(f"arrival_time must be finite and >= 0, got {job.arrival_time}")
    fields = [
        _text(job.job_type, "job_type"),
        _text(job.command, "command"),
        _text(job.working_directory, "working_directory"),
        _text(job.num_steps_arg, "num_steps_arg"),
        "1" if job.needs_data_dir else "0",
        str(int(job.total_steps)),
        str(int(job.scale_factor)),
        _number(job.priority_weight),
        "-1" if job.slo is None else _number(job.slo),
        repr(float(job.arrival_time)),
    ]
    return "\t".join(fields)


def parse_trace_line(line: str, number: int = 1) -> GavelTraceJob:
    """Parse one trace line; ``number`` names the line in errors."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != _FIELDS:
        raise ValueError(
            f"line {number}: expected {_FIELDS} tab-separated fields, got {len(fields)}"
        )
    try:
        total_steps = int(float(fields[5]))
        scale_factor = int(fields[6])
        priority = float(fields[7])
        slo = float(fields[8])
        arrival = float(fields[9])
        needs = int(fields[4])
    except ValueError as exc:
        raise ValueError(f"line {number}: {exc}") from None
    if scale_factor < 1 or needs not in (0, 1) or total_steps < 0:
        raise ValueError(f"line {number}: bad scale factor, needs_data_dir or total_steps")
    return GavelTraceJob(
        job_type=fields[0],
        command=fields[1],
        working_directory=fields[2],
        num_steps_arg=fields[3],
        needs_data_dir=bool(needs),
        total_steps=total_steps,
        scale_factor=scale_factor,
        priority_weight=priority,
        slo=None if slo < 0 else slo,
        arrival_time=arrival,
    )


def read_gavel_trace(path: str | Path) -> list[GavelTraceJob]:
    """Read a trace file; blank lines are skipped."""
    jobs: list[GavelTraceJob] = []
    with Path(path).open() as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                jobs.append(parse_trace_line(line, number))
    return jobs


def write_gavel_trace(path: str | Path, jobs: Iterable[GavelTraceJob]) -> int:
    """Write ``jobs`` one a line; return how many were written."""
    count = 0
    with Path(path).open("w") as handle:
        for job in jobs:
            handle.write(format_trace_line(job) + "\n")
            count += 1
    return count
