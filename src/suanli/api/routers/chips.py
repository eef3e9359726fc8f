"""GET /v1/chips: the packaged chip catalog with export-control classes."""

from __future__ import annotations

from fastapi import APIRouter

from suanli.api.deps import Caller
from suanli.api.wire import ChipOut
from suanli.catalog.chips import load_catalog
from suanli.catalog.export_control import classify, load_export_rules

router = APIRouter(prefix="/v1/chips", tags=["chips"])


@router.get("")
def list_chips(_caller: Caller) -> list[ChipOut]:
    rules = load_export_rules()
    return [ChipOut.of(chip, classify(chip, rules)) for chip in load_catalog()]


@router.get("/{name}")
def get_chip(name: str, _caller: Caller) -> ChipOut:
    chip = load_catalog().get(name, field="name")
    return ChipOut.of(chip, classify(chip, load_export_rules()))
