"""`suanli chips`: the packaged catalog with export-control classes (no server needed)."""

from __future__ import annotations

from suanli.catalog.chips import load_catalog
from suanli.catalog.export_control import classify, load_export_rules
from suanli.cli.common import JsonOpt, print_json, table


def chips(as_json: bool = JsonOpt) -> None:
    """Show the chip catalog: specs, domestic flag, export-control class."""
    rules = load_export_rules()
    rows = []
    for chip in load_catalog():
        c = classify(chip, rules)
        rows.append((chip, c))
    if as_json:
        print_json(
            [
                {
                    "vendor": ch.vendor,
                    "model": ch.model,
                    "domestic_cn": ch.domestic_cn,
                    "software_stack": ch.software_stack,
                    "memory_gb": None if ch.memory_gb is None else str(ch.memory_gb),
                    "dense_16bit_tflops": None
                    if ch.dense_16bit_tflops is None
                    else str(ch.dense_16bit_tflops),
                    "export_class": c.export_class,
                    "tpp": None if c.tpp is None else str(c.tpp),
                    "clause": c.clause,
                    "source": ch.source,
                }
                for ch, c in rows
            ]
        )
        return

    def s(v: object) -> str:
        return "?" if v is None else str(v)

    table(
        f"chip catalog ({len(rows)} chips; ? = no trustworthy public figure; rules: {rules.name})",
        [
            "vendor",
            "model",
            "domestic",
            "stack",
            "mem GB",
            "BW GB/s",
            "16-bit TFLOPS",
            "TPP",
            "export class",
        ],
        [
            [
                ch.vendor,
                ch.model,
                "yes" if ch.domestic_cn else "no",
                ch.software_stack,
                s(ch.memory_gb),
                s(ch.memory_bw_gbps),
                s(ch.dense_16bit_tflops),
                "?" if c.tpp is None else f"{c.tpp:.0f}",
                c.export_class,
            ]
            for ch, c in rows
        ],
    )
