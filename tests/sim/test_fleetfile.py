"""Fleet files as simulator fleets, and what-if changes to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.domain.fleet import parse_text
from suanli.errors import ValidationError
from suanli.sim.assumptions import DEFAULT_ASSUMPTIONS, load_assumptions, parse_assumptions
from suanli.sim.fleetfile import (
    apply_changes,
    fleet_from_parsed,
    generated_fleet_text,
    load_fleet,
    parse_addition,
    parse_removal,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MIXED = EXAMPLES / "fleet-mixed.yaml"


def test_the_mixed_example_fleet() -> None:
    fleet = load_fleet(MIXED)
    assert fleet.accelerators() == {"Ascend 910B": 128, "H20": 32, "H800 SXM": 48, "H100 SXM": 32}
    nx = fleet.snapshot.data_centers["nx-zhongwei"]
    assert (nx.country, nx.owner_type) == ("CN", "state")
    assert nx.costs["Ascend 910B"] == (8_500_000, "CNY")
    assert fleet.costs()[("sg-jurong", "H100 SXM")] == (2_350_000, "USD")
    ascend = next(n for n in fleet.nodes if n.chip == "Ascend 910B")
    assert ascend.domestic
    assert ascend.cost_micros == 8_500_000
    assert ascend.country == "CN"
    assert not next(n for n in fleet.nodes if n.chip == "H20").domestic
    assert fleet.regions["nx-zhongwei"] == "Ningxia"


def test_add_by_region_in_nodes_of_eight() -> None:
    fleet = load_fleet(MIXED)
    changed = apply_changes(fleet, [parse_addition("Ningxia:Ascend 910B:20")])
    new = [n for n in changed.nodes if n.name.startswith("nx-zhongwei-sim-")]
    assert [n.accelerators for n in new] == [8, 8, 4]
    assert {n.data_center for n in new} == {"nx-zhongwei"}
    assert all(n.domestic and n.chip == "Ascend 910B" for n in new)
    assert changed.accelerators()["Ascend 910B"] == 148
    assert len({n.name for n in changed.nodes}) == len(changed.nodes)
    assert len(changed.snapshot.nodes) == len(changed.nodes)
    # adding twice never clashes
    again = apply_changes(changed, [parse_addition("nx-zhongwei:910B:8")])
    assert len({n.name for n in again.nodes}) == len(again.nodes) == len(changed.nodes) + 1


def test_remove_by_name_glob_and_by_count() -> None:
    fleet = load_fleet(MIXED)
    gone = apply_changes(fleet, removals=[parse_removal("nx-h20-*")])
    assert "H20" not in gone.accelerators()
    fewer = apply_changes(fleet, removals=[parse_removal("Shanghai:H800 SXM:16")])
    assert fewer.accelerators()["H800 SXM"] == 32


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ("Mars:H20:8", "--add data center", "unknown data center 'Mars'"),
        ("Ningxia:H2O:8", "--add chip", "unknown chip 'H2O'"),
        ("Ningxia:H20:many", "--add", "not a number"),
        ("Ningxia:H20", "--add", "DATA_CENTER:CHIP:COUNT"),
    ],
)
def test_bad_additions_name_the_field(change: str, field: str, words: str) -> None:
    fleet = load_fleet(MIXED)
    with pytest.raises(ValidationError) as err:
        apply_changes(fleet, [parse_addition(change)])
    assert err.value.field == field
    assert words in err.value.message


def test_bad_removals() -> None:
    fleet = load_fleet(MIXED)
    with pytest.raises(ValidationError, match="no node matches"):
        apply_changes(fleet, removals=[parse_removal("nope-*")])
    with pytest.raises(ValidationError, match="has no H100 SXM"):
        apply_changes(fleet, removals=[parse_removal("nx-zhongwei:H100:8")])


def test_a_bad_fleet_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "data_centers:\n  - name: x\n    country: CN\n    owner_type: state\n"
        "    nodes:\n      - {name: n1, chip: Nope 9000, count: 8}\n"
    )
    with pytest.raises(ValidationError) as err:
        load_fleet(bad)
    assert err.value.field == "data_centers[0].nodes[0].chip"
    with pytest.raises(ValidationError, match="cannot read"):
        load_fleet(tmp_path / "missing.yaml")


def test_generated_fleet_has_the_size_asked() -> None:
    fleet = fleet_from_parsed(parse_text(generated_fleet_text(2000)))
    assert sum(fleet.accelerators().values()) == 2000
    assert set(fleet.snapshot.data_centers) == {"cn-state", "cn-private", "sg-private"}


def test_perf_assumptions_file() -> None:
    assert load_assumptions(EXAMPLES / "perf-assumptions.yaml") == DEFAULT_ASSUMPTIONS
    with pytest.raises(ValidationError, match="unknown metric"):
        parse_assumptions("chips:\n  910B: {flops: 3, source: me}\n")
    with pytest.raises(ValidationError, match="where the figures come from"):
        parse_assumptions("chips:\n  910B: {matmul_bf16_tflops: 3}\n")
    with pytest.raises(ValidationError, match="unknown chip"):
        parse_assumptions("chips:\n  Nope: {matmul_bf16_tflops: 3, source: me}\n")
