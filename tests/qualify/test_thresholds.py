"""Thresholds: packaged defaults, catalog-derived limits, chip overrides, bad files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from suanli.catalog.chips import load_catalog
from suanli.errors import ValidationError
from suanli.qualify.thresholds import load_thresholds, parse_thresholds

LEVELS = """\
levels:
  standard: {matmul_seconds: 3, bandwidth_seconds: 1, integrity_patterns: 4, all_reduce_seconds: 2, soak_seconds: 60, soak_samples: 30}
  long: {matmul_seconds: 15, bandwidth_seconds: 5, integrity_patterns: 6, all_reduce_seconds: 10, soak_seconds: 720, soak_samples: 120}
"""


def doc(body: str) -> str:
    return 'version: "t1"\n' + textwrap.dedent(body).lstrip("\n") + LEVELS


def refused(text: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_thresholds(text)
    return info.value


def test_packaged_defaults_load_and_derive_from_the_catalog() -> None:
    th = load_thresholds()
    h100 = load_catalog().get("H100 SXM")
    c = th.criteria("accelerator", h100)
    assert c.matmul["bf16"].threshold == pytest.approx(0.5 * 989)
    assert c.matmul["fp8"].threshold == pytest.approx(0.5 * 1979)
    assert c.matmul["int8"].threshold == pytest.approx(0.5 * 1979)
    assert c.matmul_unit("int8") == "TOPS"
    assert "0.5 x 989 TFLOPS dense BF16 peak (H100 SXM)" in c.matmul["bf16"].rule
    assert c.memory_bandwidth.threshold == pytest.approx(0.6 * 3350)
    assert c.memory_size.threshold == pytest.approx(0.9 * 80)
    assert c.host_bandwidth.threshold == 8
    assert (c.peer_tolerance, c.soak_drop_tolerance, c.max_mismatches) == (0.10, 0.15, 0)


def test_a_figure_the_catalog_lacks_gives_no_threshold_not_a_guess() -> None:
    c = load_thresholds().criteria("accelerator", load_catalog().get("Ascend 910B"))
    assert c.matmul["bf16"].threshold is None
    assert "catalog has no dense BF16 peak for Ascend 910B" in c.matmul["bf16"].rule
    assert c.memory_bandwidth.threshold is None
    assert c.memory_size.threshold == pytest.approx(0.9 * 64)
    assert load_thresholds().criteria("accelerator", None).matmul["bf16"].threshold is None


def test_cpu_minimums_are_absolute() -> None:
    c = load_thresholds().criteria("cpu", None)
    assert c.matmul["fp32"].threshold == 5
    assert c.matmul["fp64"].threshold == 2
    assert c.matmul_unit("fp32") == "GFLOPS"
    assert c.matmul_scale == 1e9
    assert "configured CPU minimum" in c.host_bandwidth.rule


def test_chip_overrides_by_catalog_name_or_alias() -> None:
    th = parse_thresholds(
        doc(
            """
            accelerator: {matmul_fraction: 0.5, memory_bandwidth_fraction: 0.6}
            chips:
              910B:
                matmul_min_tflops: {bf16: 250}
                peer_tolerance: 0.05
              h20:
                matmul_fraction: 0.7
            """
        )
    )
    catalog = load_catalog()
    ascend = th.criteria("accelerator", catalog.get("Ascend 910B"))
    assert ascend.matmul["bf16"].threshold == 250
    assert "configured minimum for Ascend 910B" in ascend.matmul["bf16"].rule
    assert ascend.peer_tolerance == 0.05
    h20 = th.criteria("accelerator", catalog.get("H20"))
    assert h20.matmul["bf16"].threshold == pytest.approx(0.7 * 148)
    assert "chip override" in h20.matmul["bf16"].rule
    assert h20.memory_bandwidth.threshold == pytest.approx(0.6 * 4000)
    h100 = th.criteria("accelerator", catalog.get("H100"))
    assert h100.matmul["bf16"].threshold == pytest.approx(0.5 * 989)


def test_plan_scales_durations_and_time_bound_sizes() -> None:
    th = load_thresholds()
    full, small = th.plan("standard", "cpu"), th.plan("standard", "cpu", time_scale=0.02)
    assert small.soak_seconds == pytest.approx(full.soak_seconds * 0.02)
    assert small.soak_samples == full.soak_samples
    assert full.integrity_bytes == 256 << 20
    assert small.integrity_bytes is not None
    assert small.integrity_bytes == pytest.approx(0.02 * (256 << 20), rel=1e-3)
    assert small.matmul_n == full.matmul_n
    accel = th.plan("long", "accelerator")
    assert (accel.integrity_bytes, accel.integrity_fraction, accel.matmul_n) == (None, 0.8, 8192)
    with pytest.raises(ValidationError, match="time_scale"):
        th.plan("standard", "cpu", time_scale=0)


@pytest.mark.parametrize(
    ("body", "field", "line", "words"),
    [
        ("accelerator:\n  peer_tolerance: 1.5\n", "accelerator.peer_tolerance", 3, "less than 1"),
        ("cpu:\n  matmul_min_gflops: {fp16: 3}\n", "cpu.matmul_min_gflops.fp16", 3, "fp32"),
        (
            "accelerator:\n  matmul_fraction: 0.5\n  typo: 1\n",
            "accelerator.typo",
            4,
            "Extra inputs",
        ),
        # a key with a block value is reported on the key's own line
        ("chips:\n  Voodoo 5:\n    matmul_fraction: 0.5\n", "chips.Voodoo 5", 3, "unknown chip"),
        ("chips:\n  H100: {}\n  h100 sxm: {}\n", "chips.h100 sxm", 4, "name the same chip"),
    ],
)
def test_a_bad_file_names_field_and_line(body: str, field: str, line: int, words: str) -> None:
    err = refused(doc(body))
    assert err.field == field
    assert err.line == line
    assert words in err.message


def test_missing_levels_and_bad_yaml_are_refused() -> None:
    assert refused('version: "t1"\n').field == "levels"
    err = refused('version: "t1"\nlevels: [\n')
    assert err.line is not None
    assert "not valid YAML" in err.message
    assert "YAML mapping" in refused("- a list\n").message


def test_load_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(doc("cpu:\n  matmul_min_gflops: {fp32: 1}\n"))
    assert load_thresholds(path).criteria("cpu", None).matmul["fp32"].threshold == 1
    with pytest.raises(ValidationError, match="cannot read"):
        load_thresholds(tmp_path / "missing.yaml")
