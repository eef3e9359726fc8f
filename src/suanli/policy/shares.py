"""Domestic share of a data center's accelerators, by count, compute and cost — exactly.

Shares are Fractions (no float drift at the 50% boundary). A view that cannot be computed
says why (a chip without a published TFLOPS figure, a chip without a cost, mixed
currencies) instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from suanli.catalog.chips import ChipCatalog
from suanli.policy.snapshot import NodeView


@dataclass(frozen=True, slots=True)
class ShareValue:
    value: Fraction | None  # None: unknown, see ``note``
    domestic: Fraction
    total: Fraction
    note: str = ""

    def text(self) -> str:
        if self.value is None:
            return f"unknown ({self.note})"
        return f"{float(self.value):.2%}"


@dataclass(frozen=True, slots=True)
class Shares:
    count: ShareValue
    compute: ShareValue
    cost: ShareValue

    def view(self, name: str) -> ShareValue:
        value: ShareValue = getattr(self, name)
        return value


def _ratio(domestic: Fraction, total: Fraction, note: str = "") -> ShareValue:
    if total == 0:
        return ShareValue(None, domestic, total, note or "no accelerators")
    return ShareValue(domestic / total, domestic, total, note)


def domestic_shares(
    nodes: Iterable[NodeView], costs: Mapping[str, tuple[int, str]], catalog: ChipCatalog
) -> Shares:
    per_chip: dict[str, int] = {}
    for node in nodes:
        if node.chip is not None and node.count > 0:
            per_chip[node.chip] = per_chip.get(node.chip, 0) + node.count

    dom_n = tot_n = Fraction(0)
    dom_c = tot_c = Fraction(0)
    dom_m = tot_m = Fraction(0)
    no_flops: list[str] = []
    no_cost: list[str] = []
    currencies: set[str] = set()
    for chip_name, count in sorted(per_chip.items()):
        chip = catalog.get(chip_name)
        domestic = chip.domestic_cn
        tot_n += count
        dom_n += count if domestic else 0
        flops = chip.dense_16bit_tflops
        if flops is None:
            no_flops.append(chip_name)
        else:
            tot_c += count * Fraction(flops)
            dom_c += count * Fraction(flops) if domestic else 0
        cost = costs.get(chip_name)
        if cost is None:
            no_cost.append(chip_name)
        else:
            currencies.add(cost[1])
            tot_m += count * cost[0]
            dom_m += count * cost[0] if domestic else 0

    count_view = _ratio(dom_n, tot_n)
    if no_flops:
        compute_view = ShareValue(
            None, dom_c, tot_c, f"no published TFLOPS for {', '.join(no_flops)}"
        )
    else:
        compute_view = _ratio(dom_c, tot_c)
    if no_cost:
        cost_view = ShareValue(None, dom_m, tot_m, f"no operator cost for {', '.join(no_cost)}")
    elif len(currencies) > 1:
        cost_view = ShareValue(
            None, dom_m, tot_m, f"costs in several currencies ({', '.join(sorted(currencies))})"
        )
    else:
        cost_view = _ratio(dom_m, tot_m, "all costs are zero" if tot_n else "")
    return Shares(count_view, compute_view, cost_view)
