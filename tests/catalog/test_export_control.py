"""ECCN 3A090 classification against the worked values, and the rule file as configuration."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from suanli.catalog import Chip, ChipCatalog, ExportRuleSet, classify, load_catalog
from suanli.catalog import load_export_rules as load_rules
from suanli.catalog.export_control import compute_tpp
from suanli.errors import ValidationError

PACKAGED_RULES = Path(__file__).resolve().parents[2] / (
    "src/suanli/catalog/data/export_control.yaml"
)
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def catalog() -> ChipCatalog:
    return load_catalog()


@pytest.fixture(scope="module")
def rules() -> ExportRuleSet:
    return load_rules()


def synthetic(catalog: ChipCatalog, tpp: str, die_area: str | None) -> Chip:
    """A chip whose TPP comes from INT8 alone (TPP = TOPS x 8)."""
    return dataclasses.replace(
        catalog.get("H20"),
        model="Synthetic",
        aliases=(),
        bf16_dense_tflops=None,
        fp16_dense_tflops=None,
        fp8_dense_tflops=None,
        int8_dense_tops=Decimal(tpp) / 8,
        die_area_mm2=None if die_area is None else Decimal(die_area),
    )


def test_packaged_rules(rules: ExportRuleSet) -> None:
    assert load_rules() is rules
    assert rules.effective_date == date(2023, 11, 17)
    assert "3A090" in rules.name
    assert "88 FR 73458" in rules.source
    assert rules.tpp_a == Decimal("4800")
    assert rules.tpp_a_with_pd == Decimal("1600")
    assert rules.pd_a == Decimal("5.92")  # exact, not a float's 5.9199...
    assert str(rules.pd_a) == "5.92"
    assert rules.non_datacenter_tpp == Decimal("4800")
    assert [b.clause for b in rules.b_clauses] == ["3A090.b(1)", "3A090.b(2)"]
    b1, b2 = rules.b_clauses
    d = Decimal
    assert (b1.tpp_min, b1.tpp_max, b1.pd_min, b1.pd_max) == (d(2400), d(4800), d("1.6"), d("5.92"))
    assert (b2.tpp_min, b2.tpp_max, b2.pd_min, b2.pd_max) == (d(1600), None, d("3.2"), d("5.92"))
    assert dict(rules.bit_lengths) == {"fp8": 8, "int8": 8, "bf16": 16, "fp16": 16}


@pytest.mark.parametrize(
    ("name", "tpp", "pd", "export_class"),
    [
        ("H100 SXM", "15832", "19.45", "3A090.a"),
        ("H800 SXM", "15832", "19.45", "3A090.a"),
        ("H200 SXM", "15832", "19.45", "3A090.a"),
        ("A100 80GB SXM", "4992", "6.04", "3A090.a"),
        ("A800 80GB SXM", "4992", "6.04", "3A090.a"),
        ("H20", "2368", "2.91", "not controlled"),
        ("L20", "1912", "3.14", "not controlled"),
        ("L40S", "5864", "9.63", "3A090.a"),
        ("GeForce RTX 4090", "5284.8", "8.68", "3A090.a"),
    ],
)
def test_worked_values(
    catalog: ChipCatalog, rules: ExportRuleSet, name: str, tpp: str, pd: str, export_class: str
) -> None:
    result = classify(catalog.get(name), rules)
    assert result.export_class == export_class
    assert result.tpp == Decimal(tpp)
    assert isinstance(result.tpp, Decimal)
    assert isinstance(result.performance_density, Decimal)
    assert result.performance_density.quantize(CENT) == Decimal(pd)
    assert result.explanation.startswith(f"{name}: TPP ")
    assert "2023-11-17" in result.explanation


def test_rtx_4090_rounds_to_the_published_5285(catalog: ChipCatalog, rules: ExportRuleSet) -> None:
    result = classify(catalog.get("RTX 4090"), rules)
    assert result.tpp is not None
    assert result.tpp.quantize(Decimal(1)) == 5285


def test_tpp_takes_the_best_precision(catalog: ChipCatalog, rules: ExportRuleSet) -> None:
    assert compute_tpp(catalog.get("H100 SXM"), rules) == (Decimal("15832"), "fp8")
    assert compute_tpp(catalog.get("Tesla T4"), rules) == (Decimal("1040"), "int8")
    assert compute_tpp(catalog.get("Tesla P100 16GB"), rules) == (Decimal("339.2"), "fp16")
    assert compute_tpp(catalog.get("Ascend 910B"), rules) is None


def test_clause_names_what_decided(catalog: ChipCatalog, rules: ExportRuleSet) -> None:
    assert classify(catalog.get("H100"), rules).clause == "3A090.a(1): TPP >= 4800"
    h20 = classify(catalog.get("H20"), rules)
    assert h20.clause.startswith("none")
    assert "PD 2.91" in h20.explanation
    t4 = classify(catalog.get("T4"), rules)
    assert (t4.export_class, t4.clause) == ("not controlled", "none: TPP < 1600")


def test_tpp_alone_decides_without_die_area(catalog: ChipCatalog, rules: ExportRuleSet) -> None:
    for name in ("B200", "Ascend 910C"):
        result = classify(catalog.get(name), rules)
        assert result.export_class == "3A090.a"
        assert result.performance_density is None


def test_ascend_910b_is_unknown_without_published_flops(
    catalog: ChipCatalog, rules: ExportRuleSet
) -> None:
    result = classify(catalog.get("Ascend 910B"), rules)
    assert result.export_class == "unknown"
    assert result.tpp is None
    assert result.performance_density is None
    assert "TPP" in result.clause
    assert "no dense" in result.explanation


def test_unknown_when_pd_needed_and_die_area_missing(
    catalog: ChipCatalog, rules: ExportRuleSet
) -> None:
    result = classify(catalog.get("MLU370-X8"), rules)
    assert result.export_class == "unknown"
    assert result.tpp == Decimal("2048")
    assert result.performance_density is None
    assert "die area" in result.clause
    assert "die area is not published" in result.explanation
    assert "3A090.a(2)" in result.explanation


def test_low_tpp_needs_no_die_area(catalog: ChipCatalog, rules: ExportRuleSet) -> None:
    result = classify(synthetic(catalog, "1000", None), rules)
    assert result.export_class == "not controlled"


@pytest.mark.parametrize(
    ("tpp", "die_area", "export_class", "clause"),
    [
        ("4800", None, "3A090.a", "3A090.a(1)"),
        ("4799", "100", "3A090.a", "3A090.a(2)"),
        ("1600", "270.27", "3A090.a", "3A090.a(2)"),  # PD 5.92003
        ("3000", "1500", "3A090.b", "3A090.b(1)"),  # PD 2.0
        ("2400", "1500", "3A090.b", "3A090.b(1)"),  # PD exactly 1.6
        ("2000", "500", "3A090.b", "3A090.b(2)"),  # PD 4.0
        ("1600", "500", "3A090.b", "3A090.b(2)"),  # PD exactly 3.2
        ("2000", "1000", "not controlled", "none"),  # PD 2.0, TPP below .b(1)
        ("1599.2", "100", "not controlled", "none"),
    ],
)
def test_clause_boundaries(
    catalog: ChipCatalog,
    rules: ExportRuleSet,
    tpp: str,
    die_area: str | None,
    export_class: str,
    clause: str,
) -> None:
    result = classify(synthetic(catalog, tpp, die_area), rules)
    assert (result.export_class, result.clause.split(":")[0]) == (export_class, clause)
    assert result.tpp == Decimal(tpp)


def test_note_2_exempts_non_datacenter_parts_below_4800(
    catalog: ChipCatalog, rules: ExportRuleSet
) -> None:
    rtx = classify(catalog.get("RTX 4090"), rules, datacenter_part=False)
    assert rtx.export_class == "3A090.a"  # TPP >= 4800: Note 2 does not apply
    b2 = synthetic(catalog, "2000", "500")
    assert classify(b2, rules).export_class == "3A090.b"
    exempt = classify(b2, rules, datacenter_part=False)
    assert exempt.export_class == "not controlled"
    assert exempt.clause.startswith("Note 2")
    unknown = classify(catalog.get("MLU370-X8"), rules, datacenter_part=False)
    assert unknown.export_class == "not controlled"


def test_thresholds_come_from_the_rule_set(catalog: ChipCatalog, rules: ExportRuleSet) -> None:
    stricter = dataclasses.replace(rules, tpp_a=Decimal("20000"), name="Test rule")
    h100 = classify(catalog.get("H100"), stricter)
    assert h100.clause == "3A090.a(2): TPP >= 1600 and PD >= 5.92"
    assert "Test rule" in h100.explanation
    looser = dataclasses.replace(rules, tpp_a=Decimal("2000"))
    assert classify(catalog.get("H20"), looser).export_class == "3A090.a"


def test_rule_file_changes_outcome(tmp_path: Path, catalog: ChipCatalog) -> None:
    text = PACKAGED_RULES.read_text(encoding="utf-8")
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace("tpp_a: 4800", "tpp_a: 2000"), encoding="utf-8")
    rules = load_rules(path)
    assert rules.tpp_a == 2000
    assert classify(catalog.get("H20"), rules).export_class == "3A090.a"


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = PACKAGED_RULES.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("  pd_a: 5.92\n", "", "thresholds.pd_a"),
        ("pd_a: 5.92", "pd_a: lots", "thresholds.pd_a"),
        ("pd_a: 5.92", "pd_a: -1", "thresholds.pd_a"),
        ("pd_a: 5.92", "pd_a: .inf", "thresholds.pd_a"),
        ("pd_a: 5.92", "pd_a: true", "thresholds.pd_a"),
        ("tpp_a: 4800", "tpp_a: 4800\n  tpp_c: 1", "thresholds.tpp_c"),
        ("fp16: 16", "fp4: 4", "bit_lengths.fp4"),
        ("fp16: 16", "fp16: 0", "bit_lengths.fp16"),
        ("effective_date: 2023-11-17", "effective_date: soon", "effective_date"),
        ("source: ", "# source: ", "source"),
        ("      pd_min: 3.2\n", "", "thresholds.b_clauses[1].pd_min"),
        (
            "      pd_max: 5.92\n    - clause",
            "      pd_max: x\n    - clause",
            "thresholds.b_clauses[0].pd_max",
        ),
        ("thresholds:\n", "thresholds_v2:\n", "thresholds_v2"),
    ],
)
def test_bad_rule_file_names_the_key(tmp_path: Path, old: str, new: str, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        load_rules(edited(tmp_path, old, new))
    assert err.value.field == field
    assert field in err.value.message
    assert "rules.yaml" in err.value.message


def test_effective_date_may_be_quoted(tmp_path: Path) -> None:
    path = edited(tmp_path, "effective_date: 2023-11-17", 'effective_date: "2025-01-15"')
    assert load_rules(path).effective_date == date(2025, 1, 15)


def test_rule_file_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("name: x\nthresholds: [1, 2\nsource: y\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="not valid YAML") as err:
        load_rules(path)
    assert err.value.line is not None


def test_rule_file_not_a_mapping_or_missing(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="mapping"):
        load_rules(path)
    with pytest.raises(ValidationError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")


def test_thresholds_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    head = PACKAGED_RULES.read_text(encoding="utf-8").split("thresholds:")[0]
    path.write_text(head + "thresholds: 7\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="must be a mapping") as err:
        load_rules(path)
    assert err.value.field == "thresholds"
