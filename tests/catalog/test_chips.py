"""The packaged chip catalog: values, lookup by alias, suggestions and load errors."""

from __future__ import annotations

import csv
import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest

from suanli.catalog import Chip, ChipCatalog, load_catalog
from suanli.errors import CatalogError, UnknownChipError

SHARED_CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "chips.csv"
PACKAGED_CSV = Path(__file__).resolve().parents[2] / "src/suanli/catalog/data/chips.csv"
HEADER = PACKAGED_CSV.read_text(encoding="utf-8").splitlines()[0]
H100_ROW = next(
    line for line in PACKAGED_CSV.read_text(encoding="utf-8").splitlines()
    if line.startswith("NVIDIA,H100 SXM,")
)  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> ChipCatalog:
    return load_catalog()


def write_csv(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "chips.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_default_catalog_is_loaded_once(catalog: ChipCatalog) -> None:
    assert load_catalog() is catalog
    assert len(catalog) == 28
    assert catalog.models()[0] == "H100 SXM"
    assert [c.model for c in catalog] == catalog.models()


def test_h100_values_are_exact_decimals(catalog: ChipCatalog) -> None:
    h100 = catalog.get("H100 SXM")
    assert h100.vendor == "NVIDIA"
    assert h100.memory_gb == Decimal("80")
    assert h100.bf16_dense_tflops == Decimal("989")
    assert h100.fp8_dense_tflops == Decimal("1979")
    assert h100.die_area_mm2 == Decimal("814")
    assert h100.release_year == 2022
    assert h100.domestic_cn is False
    assert h100.source == "NVIDIA H100 datasheet table (sparse figures halved)"
    assert isinstance(h100.fp16_dense_tflops, Decimal)


def test_empty_cells_stay_unknown(catalog: ChipCatalog) -> None:
    ascend = catalog.get("Ascend 910B")
    assert ascend.domestic_cn is True
    assert ascend.memory_gb == Decimal("64")
    for figure in ("memory_bw_gbps", "bf16_dense_tflops", "fp16_dense_tflops",
                   "fp8_dense_tflops", "int8_dense_tops", "die_area_mm2", "tdp_w"):  # fmt: skip
        assert getattr(ascend, figure) is None, figure
    assert catalog.get("MLU590").release_year is None
    assert catalog.get("DCU K100").form_factor is None


def test_l20_keeps_fractional_figure(catalog: ChipCatalog) -> None:
    assert catalog.get("L20").bf16_dense_tflops == Decimal("119.5")


@pytest.mark.skipif(not SHARED_CSV.exists(), reason=f"shared data absent: {SHARED_CSV}")
def test_packaged_csv_is_the_shared_file_plus_aliases() -> None:
    with SHARED_CSV.open(newline="", encoding="utf-8") as f:
        shared = list(csv.reader(f))
    with PACKAGED_CSV.open(newline="", encoding="utf-8") as f:
        packaged = list(csv.reader(f))
    assert packaged[0] == [*shared[0], "aliases"]
    assert [row[:-1] for row in packaged[1:]] == shared[1:]


def test_dense_16bit_prefers_bf16_then_fp16(catalog: ChipCatalog) -> None:
    assert catalog.get("H100 SXM").dense_16bit_tflops == Decimal("989")
    assert catalog.get("Tesla T4").dense_16bit_tflops == Decimal("65")
    assert catalog.get("Tesla K80").dense_16bit_tflops is None
    biren = catalog.get("BR104")
    assert biren.fp16_dense_tflops is None
    assert biren.dense_16bit_tflops == Decimal("512")


def test_chip_is_immutable(catalog: ChipCatalog) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        catalog.get("H20").memory_gb = Decimal("1")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("H100-SXM5-80GB", "H100 SXM"),
        ("H100", "H100 SXM"),
        ("NVIDIA H800", "H800 SXM"),
        ("H800", "H800 SXM"),
        ("NVIDIA H20", "H20"),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB SXM"),
        ("A100-SXM4-80GB", "A100 80GB SXM"),
        ("A800-SXM4-80GB", "A800 80GB SXM"),
        ("NVIDIA A10", "A10"),
        ("A10", "A10"),
        ("T4", "Tesla T4"),
        ("Tesla T4", "Tesla T4"),
        ("NVIDIA T4", "Tesla T4"),
        ("P100", "Tesla P100 16GB"),
        ("V100M16", "Tesla V100 SXM2"),
        ("Tesla V100-SXM2-16GB", "Tesla V100 SXM2"),
        ("K80", "Tesla K80"),
        ("910B", "Ascend 910B"),
        ("910B3", "Ascend 910B"),
        ("Ascend910B", "Ascend 910B"),
        ("910B4", "Ascend 910B4"),
        ("Ascend910B4", "Ascend 910B4"),
        ("910C", "Ascend 910C"),
    ],
)
def test_lookup_by_model_or_alias(catalog: ChipCatalog, name: str, model: str) -> None:
    assert catalog.get(name).model == model
    assert catalog.find(name) is catalog.get(model)
    assert name in catalog


@pytest.mark.parametrize("name", ["h100 sxm", "  H100   SXM ", "H100_SXM", "h100-sxm", "H100SXM"])
def test_lookup_ignores_case_spaces_underscores_hyphens(catalog: ChipCatalog, name: str) -> None:
    assert catalog.get(name).model == "H100 SXM"


def test_v100_32gb_is_not_the_16gb_row(catalog: ChipCatalog) -> None:
    assert catalog.find("V100M32") is None


def test_find_unknown_returns_none(catalog: ChipCatalog) -> None:
    assert catalog.find("Z9000") is None
    assert "Z9000" not in catalog
    assert 42 not in catalog


def test_typo_suggests_real_names(catalog: ChipCatalog) -> None:
    with pytest.raises(UnknownChipError) as err:
        catalog.get("H10", field="nodes[0].chip")
    assert err.value.name == "H10"
    assert err.value.field == "nodes[0].chip"
    assert "H100 SXM" in err.value.suggestions
    assert 1 <= len(err.value.suggestions) <= 3
    assert "did you mean" in err.value.message


def test_ascend_prefix_suggests_ascend_models(catalog: ChipCatalog) -> None:
    with pytest.raises(UnknownChipError) as err:
        catalog.get("Ascend 910")
    assert set(err.value.suggestions) <= set(catalog.models())
    assert {"Ascend 910B", "Ascend 910C"} <= set(err.value.suggestions)


def test_nonsense_has_no_suggestions(catalog: ChipCatalog) -> None:
    with pytest.raises(UnknownChipError) as err:
        catalog.get("qqqqqqqqqqqq")
    assert err.value.suggestions == []
    assert err.value.field is None


def test_catalog_rejects_duplicate_names(catalog: ChipCatalog) -> None:
    h100 = catalog.get("H100 SXM")
    with pytest.raises(CatalogError, match="duplicate"):
        ChipCatalog([h100, h100])
    clash = dataclasses.replace(catalog.get("H20"), aliases=("h100-sxm",))
    with pytest.raises(CatalogError, match="H100 SXM"):
        ChipCatalog([h100, clash])
    with pytest.raises(CatalogError, match="repeated alias"):
        ChipCatalog([dataclasses.replace(h100, aliases=("H100", "h 100"))])


def test_custom_catalog_file(tmp_path: Path) -> None:
    custom = load_catalog(write_csv(tmp_path, H100_ROW))
    assert custom.models() == ["H100 SXM"]
    assert custom is not load_catalog()


def test_bad_number_names_line_and_column(tmp_path: Path) -> None:
    bad = H100_ROW.replace(",80,3350,", ",eighty,3350,")
    with pytest.raises(CatalogError, match=r"line 3: column 'memory_gb': 'eighty'"):
        load_catalog(write_csv(tmp_path, H100_ROW.replace("H100 SXM", "X", 1), bad))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (H100_ROW.replace(",false,CUDA,", ",maybe,CUDA,"), "domestic_cn"),
        (H100_ROW.replace(",80,3350,", ",-80,3350,"), "memory_gb"),
        (H100_ROW.replace(",80,3350,", ",NaN,3350,"), "memory_gb"),
        (H100_ROW.replace(",814,700,", ",0,700,"), "die_area_mm2"),
        (H100_ROW.replace(",2022,", ",22,"), "release_year"),
        (H100_ROW.replace("NVIDIA,H100 SXM,", "NVIDIA,,"), "model"),
        (H100_ROW.replace("H100 SXM,SXM5,", "H100 SXM,SXM5,extra,"), "expected 17 fields"),
        (H100_ROW.rsplit(",", 1)[0], "expected 17 fields"),
    ],
)
def test_malformed_row_names_line(tmp_path: Path, row: str, message: str) -> None:
    with pytest.raises(CatalogError, match="line 2") as err:
        load_catalog(write_csv(tmp_path, row))
    assert message in err.value.message


def test_bad_header(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"line 1.*memory_gb"):
        load_catalog(write_csv(tmp_path, H100_ROW, header=HEADER.replace("memory_gb", "mem")))


def test_empty_catalog_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no chips"):
        load_catalog(write_csv(tmp_path))
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "absent.csv")


def test_duplicate_rows_in_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="duplicate chip name"):
        load_catalog(write_csv(tmp_path, H100_ROW, H100_ROW))


def test_constructed_chip_defaults_to_no_aliases() -> None:
    chip = Chip(
        vendor="V", model="M", form_factor=None, domestic_cn=False, software_stack="S",
        memory_gb=None, memory_bw_gbps=None, bf16_dense_tflops=None, fp16_dense_tflops=None,
        fp8_dense_tflops=None, int8_dense_tops=None, interconnect=None, die_area_mm2=None,
        tdp_w=None, release_year=None, source="test",
    )  # fmt: skip
    assert chip.aliases == ()
    assert ChipCatalog([chip]).get("m") is chip
