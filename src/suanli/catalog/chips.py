"""The accelerator catalog: one ``Chip`` per row of ``data/chips.csv``.

An empty cell means no trustworthy public figure exists; it loads as ``None`` and is never
filled in with a guess.
"""

from __future__ import annotations

import csv
import difflib
import functools
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path

from suanli.errors import CatalogError, UnknownChipError

__all__ = ["Chip", "ChipCatalog", "load_catalog", "normalize_name"]

_MAX_SUGGESTIONS = 3
_SUGGESTION_CUTOFF = 0.5
_NAME_NOISE = re.compile(r"[\s_\-]+")


@dataclass(frozen=True, slots=True)
class Chip:
    """Public specs of one accelerator model; ``None`` marks an unknown figure."""

    vendor: str
    model: str
    form_factor: str | None
    domestic_cn: bool
    software_stack: str
    memory_gb: Decimal | None
    memory_bw_gbps: Decimal | None
    bf16_dense_tflops: Decimal | None
    fp16_dense_tflops: Decimal | None
    fp8_dense_tflops: Decimal | None
    int8_dense_tops: Decimal | None
    interconnect: str | None
    die_area_mm2: Decimal | None
    tdp_w: Decimal | None
    release_year: int | None
    source: str
    aliases: tuple[str, ...] = ()

    @property
    def dense_16bit_tflops(self) -> Decimal | None:
        """Dense 16-bit throughput: BF16 when known, else FP16."""
        if self.bf16_dense_tflops is not None:
            return self.bf16_dense_tflops
        return self.fp16_dense_tflops

    @property
    def names(self) -> tuple[str, ...]:
        """The model name followed by its aliases."""
        return (self.model, *self.aliases)


def normalize_name(name: str) -> str:
    """Lookup key: case-folded, without whitespace, underscores or hyphens."""
    return _NAME_NOISE.sub("", name).casefold()


class ChipCatalog:
    """An immutable set of chips, looked up by model name or alias."""

    def __init__(self, chips: Sequence[Chip]) -> None:
        self._chips = tuple(chips)
        self._by_key: dict[str, Chip] = {}
        for chip in self._chips:
            for name in chip.names:
                key = normalize_name(name)
                if not key:
                    raise CatalogError(f"chip {chip.model!r} has an empty name or alias")
                other = self._by_key.get(key)
                if other is not None:
                    raise CatalogError(
                        f"duplicate chip name {name!r}: already used by {other.model!r}"
                        + ("" if other is not chip else " (repeated alias)")
                    )
                self._by_key[key] = chip

    def find(self, name: str) -> Chip | None:
        """The chip called ``name`` (model or alias), or ``None``."""
        return self._by_key.get(normalize_name(name))

    def get(self, name: str, field: str | None = None) -> Chip:
        """The chip called ``name``; raises ``UnknownChipError`` with close suggestions."""
        chip = self.find(name)
        if chip is None:
            raise UnknownChipError(name, self.suggest(name), field=field)
        return chip

    def suggest(self, name: str, limit: int = _MAX_SUGGESTIONS) -> list[str]:
        """Up to ``limit`` model names closest to ``name``, best first."""
        key = normalize_name(name)
        close = difflib.get_close_matches(
            key, list(self._by_key), n=len(self._by_key), cutoff=_SUGGESTION_CUTOFF
        )
        models: list[str] = []
        for match in close:
            model = self._by_key[match].model
            if model not in models:
                models.append(model)
        return models[:limit]

    def models(self) -> list[str]:
        """Model names in catalog order."""
        return [chip.model for chip in self._chips]

    def __iter__(self) -> Iterator[Chip]:
        return iter(self._chips)

    def __len__(self) -> int:
        return len(self._chips)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None


_COLUMNS = (
    "vendor", "model", "form_factor", "domestic_cn", "software_stack", "memory_gb",
    "memory_bw_gbps", "bf16_dense_tflops", "fp16_dense_tflops", "fp8_dense_tflops",
    "int8_dense_tops", "interconnect", "die_area_mm2", "tdp_w", "release_year", "source",
    "aliases",
)  # fmt: skip


class _RowError(Exception):
    """A bad cell; the loader adds file and line."""


def _text(row: Mapping[str, str], column: str, required: bool = False) -> str | None:
    value = row[column].strip()
    if not value:
        if required:
            raise _RowError(f"column {column!r} must not be empty")
        return None
    return value


def _number(row: Mapping[str, str], column: str, positive: bool = False) -> Decimal | None:
    raw = _text(row, column)
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _RowError(f"column {column!r}: {raw!r} is not a number") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise _RowError(f"column {column!r}: {raw!r} is not a finite {kind} number")
    return value


def _flag(row: Mapping[str, str], column: str) -> bool:
    raw = (_text(row, column, required=True) or "").lower()
    if raw not in ("true", "false"):
        raise _RowError(f"column {column!r}: {raw!r} is not 'true' or 'false'")
    return raw == "true"


def _year(row: Mapping[str, str], column: str) -> int | None:
    raw = _text(row, column)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) != 4:
        raise _RowError(f"column {column!r}: {raw!r} is not a year")
    return int(raw)


def _chip(row: Mapping[str, str]) -> Chip:
    aliases = tuple(a.strip() for a in (row["aliases"] or "").split(";") if a.strip())
    return Chip(
        vendor=_text(row, "vendor", required=True) or "",
        model=_text(row, "model", required=True) or "",
        form_factor=_text(row, "form_factor"),
        domestic_cn=_flag(row, "domestic_cn"),
        software_stack=_text(row, "software_stack", required=True) or "",
        memory_gb=_number(row, "memory_gb"),
        memory_bw_gbps=_number(row, "memory_bw_gbps"),
        bf16_dense_tflops=_number(row, "bf16_dense_tflops"),
        fp16_dense_tflops=_number(row, "fp16_dense_tflops"),
        fp8_dense_tflops=_number(row, "fp8_dense_tflops"),
        int8_dense_tops=_number(row, "int8_dense_tops"),
        interconnect=_text(row, "interconnect"),
        die_area_mm2=_number(row, "die_area_mm2", positive=True),
        tdp_w=_number(row, "tdp_w"),
        release_year=_year(row, "release_year"),
        source=_text(row, "source", required=True) or "",
        aliases=aliases,
    )


def parse_catalog(text: str, origin: str = "chips.csv") -> ChipCatalog:
    """Build a catalog from CSV text; ``CatalogError`` names ``origin`` and the line."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [c for c in _COLUMNS if c not in header]
    unknown = [c for c in header if c not in _COLUMNS]
    if missing or unknown:
        raise CatalogError(
            f"{origin}: line 1: bad header (missing {missing or 'none'}, unknown "
            f"{unknown or 'none'})"
        )
    chips: list[Chip] = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            raise CatalogError(f"{origin}: line {reader.line_num}: expected {len(header)} fields")
        try:
            chips.append(_chip(row))
        except _RowError as exc:
            raise CatalogError(f"{origin}: line {reader.line_num}: {exc}") from None
    if not chips:
        raise CatalogError(f"{origin}: no chips")
    try:
        return ChipCatalog(chips)
    except CatalogError as exc:
        raise CatalogError(f"{origin}: {exc.message}") from None


@functools.cache
def _packaged_catalog() -> ChipCatalog:
    resource = resources.files("suanli.catalog").joinpath("data", "chips.csv")
    return parse_catalog(resource.read_text(encoding="utf-8"), "packaged chips.csv")


def load_catalog(path: Path | None = None) -> ChipCatalog:
    """The catalog in ``path``, or the packaged one (loaded once) when ``path`` is None."""
    if path is None:
        return _packaged_catalog()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read chip catalog {path}: {exc}") from None
    return parse_catalog(text, str(path))
