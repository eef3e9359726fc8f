"""The Alibaba fleet importer, on a slice made here and on the real file when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.domain.fleet import parse_data
from suanli.errors import ValidationError
from suanli.importers import alibaba

DC = {"name": "ali", "country": "CN", "owner_type": "private"}
REAL = (
    Path(__file__).parents[3]
    / "shared"
    / "data"
    / "traces"
    / "alibaba-spot-2026"
    / "node_info_df.csv"
)

SLICE = """gpu_model,gpu_capacity_num,cpu_num,node_name
H800,8,192,0
A100-SXM4-80GB,8,128,1
GPU-series-1,4,96,2
A10,1,32,3
A800-SXM4-80GB,0,32,4
"""


def test_slice_converts_and_validates() -> None:
    result = alibaba.convert(SLICE.splitlines(keepends=True), DC)
    assert (result.nodes, result.accelerators) == (3, 17)
    assert result.skipped == {"GPU-series-1": 1, "no accelerators": 1}
    fleet = parse_data(result.fleet)
    assert [(n.name, n.chip, n.count) for n in fleet.nodes] == [
        ("ali-0", "H800 SXM", 8),
        ("ali-1", "A100 80GB SXM", 8),
        ("ali-3", "A10", 1),
    ]


def test_mapping_names_anonymised_models() -> None:
    result = alibaba.convert(SLICE.splitlines(keepends=True), DC, {"GPU-series-1": "L20"})
    assert result.nodes == 4
    assert "GPU-series-1" not in result.skipped


def test_wrong_file_is_refused() -> None:
    with pytest.raises(ValidationError, match="missing columns"):
        alibaba.convert(["a,b\n", "1,2\n"], DC)
    with pytest.raises(ValidationError, match="integers"):
        alibaba.convert(["gpu_model,gpu_capacity_num,cpu_num,node_name\n", "H800,eight,1,0\n"], DC)


@pytest.mark.skipif(not REAL.exists(), reason="shared trace not present")
def test_real_fleet() -> None:
    with REAL.open() as fh:
        result = alibaba.convert(fh, DC)
    fleet = parse_data(result.fleet)
    assert len(fleet.nodes) == result.nodes == 4278 - 989 - 122
    assert result.skipped["GPU-series-1"] == 989
    assert {n.chip for n in fleet.nodes} == {"A10", "A100 80GB SXM", "A800 80GB SXM", "H800 SXM"}
