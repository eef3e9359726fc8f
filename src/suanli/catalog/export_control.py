"""US ECCN 3A090 classification of a chip, driven by a rule set loaded from YAML.

Every threshold lives in ``data/export_control.yaml`` (or a file the operator supplies);
this module only knows the shape of the rule: TPP, performance density (PD), clause .a,
the .b clauses and the Note 2 exemption. Unknown figures yield "unknown", never a guess.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Context, Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import yaml

from suanli.catalog.chips import Chip
from suanli.errors import CatalogError, ValidationError

__all__ = [
    "PRECISIONS",
    "BClause",
    "Classification",
    "ExportClass",
    "ExportRuleSet",
    "classify",
    "compute_tpp",
    "load_export_rules",
]

ExportClass = Literal["3A090.a", "3A090.b", "not controlled", "unknown"]

PRECISIONS = ("bf16", "fp16", "fp8", "int8")
"""Precisions a rule set may give a bit length for (the catalog's dense figures)."""

_CTX = Context(prec=28)
_CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class BClause:
    """One 3A090.b clause: ``tpp_min <= TPP < tpp_max`` and ``pd_min <= PD < pd_max``."""

    clause: str
    tpp_min: Decimal
    tpp_max: Decimal | None
    pd_min: Decimal
    pd_max: Decimal | None

    def tpp_in_range(self, value: Decimal) -> bool:
        return value >= self.tpp_min and (self.tpp_max is None or value < self.tpp_max)

    def pd_in_range(self, value: Decimal) -> bool:
        return value >= self.pd_min and (self.pd_max is None or value < self.pd_max)

    def describe(self) -> str:
        tpp = _range("TPP", self.tpp_min, self.tpp_max)
        return f"{self.clause}: {tpp} and {_range('PD', self.pd_min, self.pd_max)}"


@dataclass(frozen=True)
class ExportRuleSet:
    """The 3A090 thresholds in force from ``effective_date``."""

    name: str
    effective_date: date
    source: str
    tpp_a: Decimal
    tpp_a_with_pd: Decimal
    pd_a: Decimal
    b_clauses: tuple[BClause, ...]
    non_datacenter_tpp: Decimal
    bit_lengths: Mapping[str, int] = field(hash=False)


@dataclass(frozen=True)
class Classification:
    """The outcome, the figures behind it and the clause that decided."""

    export_class: ExportClass
    tpp: Decimal | None
    performance_density: Decimal | None
    clause: str
    explanation: str


def compute_tpp(chip: Chip, rules: ExportRuleSet) -> tuple[Decimal, str] | None:
    """Highest dense TOPS x bit length over the rule's precisions, with that precision."""
    dense = {
        "bf16": chip.bf16_dense_tflops,
        "fp16": chip.fp16_dense_tflops,
        "fp8": chip.fp8_dense_tflops,
        "int8": chip.int8_dense_tops,
    }
    best: tuple[Decimal, str] | None = None
    for precision, bits in rules.bit_lengths.items():
        value = dense.get(precision)
        if value is None:
            continue
        product = _CTX.multiply(value, Decimal(bits))
        if best is None or product > best[0]:
            best = (product, precision)
    return best


def classify(chip: Chip, rules: ExportRuleSet, datacenter_part: bool = True) -> Classification:
    """Classify ``chip`` under ``rules``; ``datacenter_part=False`` applies Note 2."""
    under = f"under {rules.name} (effective {rules.effective_date.isoformat()})"
    found = compute_tpp(chip, rules)
    if found is None:
        wanted = "/".join(p.upper() for p in rules.bit_lengths)
        return Classification(
            export_class="unknown",
            tpp=None,
            performance_density=None,
            clause="TPP unknown: no dense compute figure",
            explanation=f"{chip.model}: no dense {wanted} throughput is published, so TPP "
            f"cannot be computed; export class unknown {under}.",
        )
    tpp, precision = found
    bits = rules.bit_lengths[precision]
    tpp_txt = f"TPP {_fmt(tpp)} ({precision.upper()} {_fmt(_CTX.divide(tpp, bits))} x {bits} bits)"
    density = _pd(tpp, chip)

    def result(export_class: ExportClass, clause: str, text: str) -> Classification:
        return Classification(export_class, tpp, density, clause, f"{chip.model}: {text} {under}.")

    if tpp >= rules.tpp_a:
        clause = f"3A090.a(1): TPP >= {_fmt(rules.tpp_a)}"
        return result("3A090.a", clause, f"{tpp_txt} meets {clause}, so it is 3A090.a")
    if not datacenter_part and tpp < rules.non_datacenter_tpp:
        limit = _fmt(rules.non_datacenter_tpp)
        return result(
            "not controlled",
            f"Note 2: non-data-center part with TPP < {limit}",
            f"not designed or marketed for data centers and {tpp_txt} < {limit}, so Note 2 "
            "exempts it; not controlled",
        )

    a2 = f"3A090.a(2): TPP >= {_fmt(rules.tpp_a_with_pd)} and PD >= {_fmt(rules.pd_a)}"
    a2_open = tpp >= rules.tpp_a_with_pd
    b_open = [b for b in rules.b_clauses if b.tpp_in_range(tpp)]
    if not a2_open and not b_open:
        floor = _fmt(min([rules.tpp_a_with_pd, *(b.tpp_min for b in rules.b_clauses)]))
        return result(
            "not controlled",
            f"none: TPP < {floor}",
            f"{tpp_txt} is below {floor}, the lowest TPP any clause needs; not controlled",
        )
    if density is None:
        open_clauses = (["3A090.a(2)"] if a2_open else []) + [b.clause for b in b_open]
        return result(
            "unknown",
            "PD unknown: die area not published",
            f"{tpp_txt} falls where performance density decides ({', '.join(open_clauses)}), "
            "but its die area is not published, so PD cannot be computed; export class unknown",
        )
    pd_txt = f"PD {density.quantize(_CENT)} (TPP / {_fmt(chip.die_area_mm2)} mm2)"
    if a2_open and density >= rules.pd_a:
        return result("3A090.a", a2, f"{tpp_txt} and {pd_txt} meet {a2}, so it is 3A090.a")
    for b in b_open:
        if b.pd_in_range(density):
            clause = b.describe()
            return result("3A090.b", clause, f"{tpp_txt} and {pd_txt} meet {clause}, so 3A090.b")
    return result(
        "not controlled",
        "none: no TPP/PD clause met",
        f"{tpp_txt} and {pd_txt} meet no 3A090.a or 3A090.b clause; not controlled",
    )


def _pd(value: Decimal, chip: Chip) -> Decimal | None:
    area = chip.die_area_mm2
    if area is None or area <= 0:
        return None
    return _CTX.divide(value, area)


def _fmt(value: Decimal | None) -> str:
    return "?" if value is None else format(value.normalize(_CTX), "f")


def _range(label: str, low: Decimal, high: Decimal | None) -> str:
    if high is None:
        return f"{label} >= {_fmt(low)}"
    return f"{_fmt(low)} <= {label} < {_fmt(high)}"


# --- loading -------------------------------------------------------------------------------


class _DecimalLoader(yaml.SafeLoader):
    """A safe loader that reads YAML floats as exact Decimals (5.92, not 5.9199...)."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal | str:
    assert isinstance(node, yaml.ScalarNode)
    raw = str(loader.construct_scalar(node))
    try:
        return Decimal(raw.replace("_", ""))
    except InvalidOperation:
        return raw  # e.g. .inf; rejected with its key by _decimal()


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


class _RuleError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _mapping(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _RuleError(key, "must be a mapping")
    return value


def _fields(value: object, key: str, allowed: set[str]) -> Mapping[str, object]:
    data = _mapping(value, key)
    prefix = "" if key == "(top level)" else f"{key}."
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise _RuleError(f"{prefix}{unknown[0]}", "unknown key")
    missing = sorted(k for k in allowed if k not in data and not k.endswith("_max"))
    if missing:
        raise _RuleError(f"{prefix}{missing[0]}", "missing")
    return data


def _decimal(value: object, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise _RuleError(key, f"{value!r} is not a number")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _RuleError(key, f"{value!r} is not a number") from None
    if not number.is_finite() or number < 0:
        raise _RuleError(key, f"{value!r} is not a finite non-negative number")
    return number


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _RuleError(key, "must be a non-empty string")
    return value.strip()


def _date(value: object, key: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(_text(value, key))
    except ValueError:
        raise _RuleError(key, f"{value!r} is not a date (YYYY-MM-DD)") from None


def _bit_lengths(value: object) -> Mapping[str, int]:
    data = _mapping(value, "bit_lengths")
    if not data:
        raise _RuleError("bit_lengths", "must name at least one precision")
    out: dict[str, int] = {}
    for precision, bits in data.items():
        key = f"bit_lengths.{precision}"
        if precision not in PRECISIONS:
            raise _RuleError(key, f"unknown precision (known: {', '.join(PRECISIONS)})")
        if isinstance(bits, bool) or not isinstance(bits, int) or bits <= 0:
            raise _RuleError(key, f"{bits!r} is not a positive whole number of bits")
        out[precision] = bits
    return MappingProxyType(out)


def _b_clause(value: object, key: str) -> BClause:
    data = _fields(value, key, {"clause", "tpp_min", "tpp_max", "pd_min", "pd_max"})

    def optional(name: str) -> Decimal | None:
        return None if data.get(name) is None else _decimal(data[name], f"{key}.{name}")

    return BClause(
        clause=_text(data["clause"], f"{key}.clause"),
        tpp_min=_decimal(data["tpp_min"], f"{key}.tpp_min"),
        tpp_max=optional("tpp_max"),
        pd_min=_decimal(data["pd_min"], f"{key}.pd_min"),
        pd_max=optional("pd_max"),
    )


def _rules(data: object) -> ExportRuleSet:
    top_keys = {"name", "effective_date", "source", "bit_lengths", "thresholds"}
    top = _fields(data, "(top level)", top_keys)
    th_keys = {"tpp_a", "tpp_a_with_pd", "pd_a", "b_clauses", "non_datacenter_tpp"}
    th = _fields(top["thresholds"], "thresholds", th_keys)

    def num(key: str) -> Decimal:
        return _decimal(th[key], f"thresholds.{key}")

    raw_b = th["b_clauses"]
    if not isinstance(raw_b, list):
        raise _RuleError("thresholds.b_clauses", "must be a list")
    return ExportRuleSet(
        name=_text(top["name"], "name"),
        effective_date=_date(top["effective_date"], "effective_date"),
        source=_text(top["source"], "source"),
        tpp_a=num("tpp_a"),
        tpp_a_with_pd=num("tpp_a_with_pd"),
        pd_a=num("pd_a"),
        b_clauses=tuple(_b_clause(b, f"thresholds.b_clauses[{i}]") for i, b in enumerate(raw_b)),
        non_datacenter_tpp=num("non_datacenter_tpp"),
        bit_lengths=_bit_lengths(top["bit_lengths"]),
    )


def parse_export_rules(text: str, origin: str = "export rules") -> ExportRuleSet:
    """Rule set from YAML text; ``ValidationError`` names the key (``field``) or line."""
    try:
        data = yaml.load(text, Loader=_DecimalLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else int(mark.line) + 1
        raise ValidationError(f"{origin}: not valid YAML: {exc}", line=line) from None
    try:
        return _rules(data)
    except _RuleError as exc:
        raise ValidationError(f"{origin}: {exc.key}: {exc.message}", field=exc.key) from None


@functools.cache
def _packaged_rules() -> ExportRuleSet:
    resource = resources.files("suanli.catalog").joinpath("data", "export_control.yaml")
    try:
        return parse_export_rules(resource.read_text(encoding="utf-8"), "export_control.yaml")
    except ValidationError as exc:
        raise CatalogError(f"packaged {exc.message}") from None


def load_export_rules(path: Path | None = None) -> ExportRuleSet:
    """Rules from ``path`` (operator configuration: errors are ``ValidationError``), or the
    packaged rules (loaded once; a broken packaged file is a ``CatalogError``)."""
    if path is None:
        return _packaged_rules()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"cannot read export rules {path}: {exc}") from None
    return parse_export_rules(text, str(path))
