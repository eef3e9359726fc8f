"""The throughput matrix measured for Gavel (OSDI 2020): 26 training jobs on K80/P100/V100.

The file maps ``chip -> "('<job type>', <scale factor>)" -> {...}``. Inside, the key
``"null"`` holds the job's throughput (steps per second, for the whole job on
``scale_factor`` GPUs of that chip) when it runs alone; every other key names a co-located
job and holds the pair ``[own throughput, other's throughput]`` when both share the GPUs.
The chips ``*_unconsolidated`` hold the same jobs spread over servers; this loader keeps
them as chips of their own.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GavelMatrix", "JobKey", "load_gavel_matrix", "parse_job_key"]

JobKey = tuple[str, int]
"""A job type and its scale factor (the number of GPUs it runs on)."""

_SOLO = "null"


def parse_job_key(text: str) -> JobKey:
    """Parse ``"('ResNet-18 (batch size 16)', 1)"`` into ``("ResNet-18 (batch size 16)", 1)``."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"not a (job type, scale factor) key: {text!r}") from exc
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not isinstance(value[0], str)
        or not isinstance(value[1], int)
        or isinstance(value[1], bool)
        or value[1] < 1
    ):
        raise ValueError(f"not a (job type, scale factor) key: {text!r}")
    return (value[0], value[1])


def _finite_nonneg(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: throughput must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{where}: throughput must be finite and >= 0, got {number}")
    return number


@dataclass(frozen=True)
class GavelMatrix:
    """Measured throughputs, solo and co-located, per chip and (job type, scale factor)."""

    solo: Mapping[str, Mapping[JobKey, float]]
    pairs: Mapping[str, Mapping[JobKey, Mapping[JobKey, tuple[float, float]]]] = field(
        default_factory=dict
    )

    @property
    def chips(self) -> tuple[str, ...]:
        """Chip names in file order (for example ``k80, p100, v100, ...``)."""
        return tuple(self.solo)

    @property
    def job_types(self) -> tuple[str, ...]:
        """Job types measured on every chip, sorted."""
        sets = [{key[0] for key in per_chip} for per_chip in self.solo.values()]
        common = set.intersection(*sets) if sets else set()
        return tuple(sorted(common))

    def scale_factors(
        self, job_type: str, chips: str | Sequence[str] | None = None
    ) -> tuple[int, ...]:
        """Scale factors measured for ``job_type`` on every one of ``chips`` (default: all).

        The ``*_unconsolidated`` chips lack a few multi-GPU measurements, so pass the chips
        of the fleet at hand."""
        names = [chips] if isinstance(chips, str) else list(chips or self.solo)
        found: set[int] | None = None
        for name in names:
            here = {sf for (jt, sf) in self._chip(name) if jt == job_type}
            found = here if found is None else found & here
        return tuple(sorted(found or ()))

    def throughput(self, job_type: str, chip: str, scale_factor: int = 1) -> float:
        """Steps per second of ``job_type`` alone on ``scale_factor`` GPUs of ``chip``."""
        per_chip = self._chip(chip)
        try:
            return per_chip[(job_type, scale_factor)]
        except KeyError:
            raise KeyError(
                f"no throughput for {job_type!r} at scale factor {scale_factor} on {chip!r}"
            ) from None

    def colocated(
        self, job_type: str, other: str, chip: str, scale_factor: int = 1
    ) -> tuple[float, float]:
        """Throughputs ``(job_type's, other's)`` when the two share the GPUs of ``chip``."""
        try:
            return self.pairs[chip][(job_type, scale_factor)][(other, scale_factor)]
        except KeyError:
            raise KeyError(
                f"no co-location of {job_type!r} with {other!r} "
                f"(scale factor {scale_factor}) on {chip!r}"
            ) from None

    def _chip(self, chip: str) -> Mapping[JobKey, float]:
        try:
            return self.solo[chip]
        except KeyError:
            raise KeyError(f"unknown chip {chip!r}; known: {', '.join(self.solo)}") from None


def load_gavel_matrix(path: str | Path) -> GavelMatrix:
    """Read Gavel's ``simulation_throughputs.json``; raise ``ValueError`` if malformed."""
    raw = json.loads(Path(path).read_text())
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a non-empty object of chips")
    solo: dict[str, dict[JobKey, float]] = {}
    pairs: dict[str, dict[JobKey, dict[JobKey, tuple[float, float]]]] = {}
    for chip, jobs in raw.items():
        if not isinstance(jobs, dict):
            raise ValueError(f"{path}: chip {chip!r} must map job keys to objects")
        solo[chip] = {}
        pairs[chip] = {}
        for key_text, entry in jobs.items():
            key = parse_job_key(key_text)
            where = f"{path}: {chip} {key_text}"
            if not isinstance(entry, dict) or _SOLO not in entry:
                raise ValueError(f"{where}: missing the solo ('null') throughput")
            solo[chip][key] = _finite_nonneg(entry[_SOLO], where)
            per_job: dict[JobKey, tuple[float, float]] = {}
            for other_text, value in entry.items():
                if other_text == _SOLO:
                    continue
                if not isinstance(value, list) or len(value) != 2:
                    raise ValueError(f"{where} with {other_text}: expected a pair")
                per_job[parse_job_key(other_text)] = (
                    _finite_nonneg(value[0], where),
                    _finite_nonneg(value[1], where),
                )
            pairs[chip][key] = per_job
    return GavelMatrix(solo=solo, pairs=pairs)
