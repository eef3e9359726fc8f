"""The packaged accelerator catalog and export-control classification."""

from suanli.catalog.chips import Chip, ChipCatalog, load_catalog
from suanli.catalog.export_control import (
    Classification,
    ExportClass,
    ExportRuleSet,
    classify,
    load_export_rules,
)

__all__ = [
    "Chip",
    "ChipCatalog",
    "Classification",
    "ExportClass",
    "ExportRuleSet",
    "classify",
    "load_catalog",
    "load_export_rules",
]
