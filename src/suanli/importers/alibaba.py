"""The Alibaba 2025-era fleet (``node_info_df.csv``: gpu_model, gpu_capacity_num, cpu_num,
node_name) as a fleet structure for one data center.

GPU model names are resolved through the catalog's aliases (``A100-SXM4-80GB`` ->
``A100 80GB SXM``). The trace also holds anonymised models (``GPU-series-1``) that no
catalog can name: those rows are skipped and counted, unless ``mapping`` says what they are.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from suanli.catalog.chips import load_catalog
from suanli.errors import ValidationError

COLUMNS = ("gpu_model", "gpu_capacity_num", "cpu_num", "node_name")


@dataclass
class ImportResult:
    fleet: dict[str, Any]
    nodes: int = 0
    accelerators: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def convert(
    lines: Iterable[str],
    data_center: Mapping[str, Any],
    mapping: Mapping[str, str] | None = None,
    prefix: str = "ali-",
) -> ImportResult:
    """``data_center`` holds the data center's fields (name, country, owner_type ...)."""
    catalog = load_catalog()
    mapping = dict(mapping or {})
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationError(f"not a node_info_df.csv: missing columns {missing}", "header", 1)
    nodes: list[dict[str, Any]] = []
    result = ImportResult(fleet={})
    for number, row in enumerate(reader, start=2):
        model = mapping.get(row["gpu_model"], row["gpu_model"])
        chip = catalog.find(model)
        if chip is None:
            result.skipped[row["gpu_model"]] += 1
            continue
        try:
            count = int(row["gpu_capacity_num"])
            cpus = int(row["cpu_num"])
        except ValueError:
            raise ValidationError(
                f"line {number}: counts must be integers", "gpu_capacity_num", number
            ) from None
        if count <= 0:
            result.skipped["no accelerators"] += 1
            continue
        nodes.append(
            {
                "name": f"{prefix}{row['node_name']}",
                "chip": chip.model,
                "count": count,
                "cpu_cores": cpus if cpus > 0 else None,
                "state": "ready",
            }
        )
        result.accelerators += count
    result.nodes = len(nodes)
    result.fleet = {"data_centers": [{**data_center, "nodes": nodes}]}
    return result
