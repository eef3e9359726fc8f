"""Parsing fleet files without a server: expansion, validation, line numbers."""

from __future__ import annotations

import pytest

from suanli.domain.fleet import parse_text
from suanli.domain.yamldoc import format_path
from suanli.errors import ValidationError

HEAD = "data_centers:\n  - name: a\n    country: CN\n    owner_type: state\n    nodes:\n"


def test_replicas_expand_with_first() -> None:
    fleet = parse_text(
        HEAD + '      - {name: "g-{i:02d}", replicas: 3, first: 9, chip: "910B", count: 8}\n'
    )
    assert [n.name for n in fleet.nodes] == ["g-09", "g-10", "g-11"]
    assert {n.chip for n in fleet.nodes} == {"Ascend 910B"}


@pytest.mark.parametrize(
    ("row", "field", "line"),
    [
        ("{name: x, chip: H20, count: 100}", "data_centers[0].nodes[0].count", 6),
        ("{name: x, chip: H20}", "data_centers[0].nodes[0]", 6),
        ("{name: x, chip: H20, count: 1, colour: red}", "data_centers[0].nodes[0].colour", 6),
        (
            '{name: "x-{i}-{j}", replicas: 2, chip: H20, count: 1}',
            "data_centers[0].nodes[0].name",
            6,
        ),
    ],
)
def test_errors_point_at_the_row(row: str, field: str, line: int) -> None:
    with pytest.raises(ValidationError) as info:
        parse_text(HEAD + f"      - {row}\n")
    assert info.value.field == field
    assert info.value.line == line


def test_duplicate_data_center() -> None:
    text = "data_centers:\n  - {name: a, country: CN, owner_type: state}\n  - {name: a, country: SG, owner_type: private}\n"
    with pytest.raises(ValidationError, match="declared twice") as info:
        parse_text(text)
    assert info.value.line == 3


def test_format_path() -> None:
    assert format_path(("data_centers", 1, "nodes", 0, "chip")) == "data_centers[1].nodes[0].chip"
    assert format_path(()) == ""
