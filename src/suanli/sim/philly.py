"""Loader of the Philly trace (Microsoft, 2017) as a CSV of GPU jobs.

Columns: ``timestamp`` (submission, ``YYYY-MM-DD HH:MM:SS``), ``duration`` (seconds of run
time), ``num_gpus``, ``gpu_time`` (``duration * num_gpus``) and ``cluster`` (a hashed
virtual-cluster name).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["PhillyJob", "arrival_offsets", "load_philly", "usable_jobs"]

_COLUMNS = ("timestamp", "duration", "num_gpus", "gpu_time", "cluster")
_TIME_LENGTH = len("YYYY-MM-DD HH:MM:SS")
_EPOCH = datetime(1970, 1, 1)  # the trace's times are naive; read them as UTC


@dataclass(frozen=True, slots=True)
class PhillyJob:
    """One job of the trace; ``submitted`` is seconds since the Unix epoch (UTC)."""

    submitted: float
    duration: float
    num_gpus: int
    gpu_time: float
    cluster: str


def _number(text: str, column: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"line {line}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"line {line}: {column} must be finite and >= 0, got {text!r}")
    return value


def load_philly(path: str | Path) -> list[PhillyJob]:
    """Read the trace in file order; raise ``ValueError`` naming the line of a bad row."""
    jobs: list[PhillyJob] = []
    with Path(path).open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != _COLUMNS:
            raise ValueError(f"{path}: expected the header {','.join(_COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(_COLUMNS):
                raise ValueError(f"line {line}: expected {len(_COLUMNS)} fields, got {len(row)}")
            try:
                if len(row[0]) != _TIME_LENGTH:
                    raise ValueError(row[0])
                submitted = (datetime.fromisoformat(row[0]) - _EPOCH).total_seconds()
            except ValueError:
                raise ValueError(f"line {line}: bad timestamp {row[0]!r}") from None
            gpus = _number(row[2], "num_gpus", line)
            if gpus != int(gpus) or gpus < 1:
                raise ValueError(f"line {line}: num_gpus must be a positive integer")
            jobs.append(
                PhillyJob(
                    submitted=submitted,
                    duration=_number(row[1], "duration", line),
                    num_gpus=int(gpus),
                    gpu_time=_number(row[3], "gpu_time", line),
                    cluster=row[4],
                )
            )
    return jobs


def usable_jobs(
    jobs: Iterable[PhillyJob], gpu_counts: Sequence[int] | None = None
) -> list[PhillyJob]:
    """Jobs with a positive duration (and, if given, a GPU count in ``gpu_counts``)."""
    allowed = set(gpu_counts) if gpu_counts is not None else None
    return [
        job for job in jobs if job.duration > 0 and (allowed is None or job.num_gpus in allowed)
    ]


def arrival_offsets(jobs: Sequence[PhillyJob]) -> list[float]:
    """Submission times in seconds after the earliest one (same order as ``jobs``)."""
    if not jobs:
        return []
    start = min(job.submitted for job in jobs)
    return [job.submitted - start for job in jobs]
