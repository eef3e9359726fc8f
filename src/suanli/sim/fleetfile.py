"""A fleet for the simulator: from a fleet file (``suanli fleet apply`` format), generated,
or changed for a what-if.

``load_fleet`` reads a fleet YAML through ``suanli.domain.fleet.parse_text`` (errors name
the field and line) into the scheduler's ``NodeView``s and the compliance engine's
``FleetSnapshot``: country and owner type per data center, the operator's cost per
accelerator-hour and currency per chip, the domestic flag from the chip catalog. Every node
with accelerators takes work in the simulation unless the file puts it in ``draining``,
``quarantined`` or ``down`` (a registered or qualifying node is planned capacity).

What-if changes: ``parse_addition("Ningxia:Ascend 910B:512")`` adds 512 accelerators in
nodes of 8 (the last one smaller when the count is not a multiple) to the data center named
``Ningxia`` or whose unique ``region`` is Ningxia, in a new island, named
``<dc>-sim-<chip>-NNN`` so they clash with no node of the file; ``parse_removal`` takes a
node name (a glob such as ``nx-h20-*``) or ``DC:CHIP:COUNT`` (whole nodes of that chip
there, the last ones first, until at least COUNT accelerators are gone).
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from suanli.catalog.chips import ChipCatalog, load_catalog
from suanli.domain.fleet import ParsedFleet, parse_text
from suanli.errors import ValidationError
from suanli.policy.snapshot import DataCenterView, FleetSnapshot
from suanli.policy.snapshot import NodeView as PolicyNode
from suanli.scheduler.workload import NodeView

__all__ = [
    "Addition",
    "Removal",
    "SimFleet",
    "apply_changes",
    "fleet_from_parsed",
    "generated_fleet_text",
    "load_fleet",
    "parse_addition",
    "parse_removal",
]

NODE_SIZE = 8
IDLE_STATES = frozenset({"draining", "quarantined", "down"})
_MICROS = Decimal(1_000_000)


@dataclass(frozen=True)
class SimFleet:
    """Nodes as the scheduler sees them, the compliance snapshot of their data centers,
    and each data center's region (for what-if lookups)."""

    nodes: tuple[NodeView, ...]
    snapshot: FleetSnapshot
    regions: Mapping[str, str] = field(default_factory=dict)

    def accelerators(self) -> Counter[str]:
        """Accelerators per chip."""
        out = Counter[str]()
        for n in self.nodes:
            out[n.chip] += n.accelerators
        return out

    def by_place(self) -> Counter[tuple[str, str]]:
        """Accelerators per (data center, chip)."""
        out = Counter[tuple[str, str]]()
        for n in self.nodes:
            out[(n.data_center, n.chip)] += n.accelerators
        return out

    def costs(self) -> dict[tuple[str, str], tuple[int, str]]:
        """(data center, chip) -> (operator cost in micro-units per accelerator-hour, currency)."""
        return {
            (name, chip): cost
            for name, dc in self.snapshot.data_centers.items()
            for chip, cost in dc.costs.items()
        }


def main_currency(views: Iterable[DataCenterView]) -> str:
    """The currency most data-center costs are quoted in (ties: alphabetical)."""
    seen = Counter(ccy for v in views for _amount, ccy in v.costs.values())
    return min(seen, key=lambda c: (-seen[c], c)) if seen else ""


def cost_in(view: DataCenterView, chip: str, currency: str) -> int:
    """The data center's cost per accelerator-hour of ``chip`` if quoted in ``currency``,
    else 0 (unknown): the cost policy compares amounts, and there is no exchange rate."""
    amount, ccy = view.costs.get(chip, (0, ""))
    return amount if ccy == currency else 0


def fleet_from_parsed(parsed: ParsedFleet, catalog: ChipCatalog | None = None) -> SimFleet:
    cat = catalog if catalog is not None else load_catalog()
    views: dict[str, DataCenterView] = {}
    regions: dict[str, str] = {}
    for dc in parsed.data_centers:
        costs = {c.chip: (int(c.per_accelerator_hour * _MICROS), c.currency) for c in dc.costs}
        views[dc.name] = DataCenterView(dc.name, dc.country, dc.owner_type, costs)
        regions[dc.name] = dc.region
    currency = main_currency(views.values())
    nodes: list[NodeView] = []
    policy_nodes: list[PolicyNode] = []
    for spec in parsed.nodes:
        policy_nodes.append(PolicyNode(spec.name, spec.data_center, spec.chip, spec.count))
        if spec.chip is None or spec.count < 1:
            continue
        view = views[spec.data_center]
        chip = cat.get(spec.chip)
        cost = cost_in(view, chip.model, currency)
        state = "idle" if str(spec.state) in IDLE_STATES else "ready"
        nodes.append(
            NodeView(
                spec.name, spec.data_center, view.country, chip.model, spec.count,
                spec.island, None, chip.domestic_cn, cost, state,
            )
        )  # fmt: skip
    if not any(n.state == "ready" for n in nodes):
        raise ValidationError("the fleet has no node with accelerators", "data_centers")
    return SimFleet(tuple(nodes), FleetSnapshot(views, tuple(policy_nodes)), regions)


def load_fleet(path: str | Path, catalog: ChipCatalog | None = None) -> SimFleet:
    """Read a fleet file; ``ValidationError`` naming the field (and line) when it is bad."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(f"cannot read fleet file {p}: {exc.strerror}", "--fleet") from None
    return fleet_from_parsed(parse_text(text), catalog)


def generated_fleet_text(gpus: int = 2000) -> str:
    """A mixed fleet of about ``gpus`` accelerators in nodes of 8, as a fleet file:
    a state-owned data center in China (Ascend 910B and H20, domestic by count), a private
    one in China (H800) and one in Singapore (H100). Costs are illustrative."""
    nodes = max(gpus // NODE_SIZE, 4)
    n910, nh20 = round(nodes * 0.384), round(nodes * 0.128)
    nh800 = round(nodes * 0.256)
    nh100 = max(nodes - n910 - nh20 - nh800, 1)

    def node(stem: str, replicas: int, chip: str, island: str) -> str:
        return (
            f'      - {{name: "{stem}-{{i:03d}}", replicas: {replicas}, chip: {chip},\n'
            f"         count: 8, island: {island}, state: ready}}\n"
        )

    return (
        "data_centers:\n"
        "  - name: cn-state\n    country: CN\n    region: Ningxia\n    owner_type: state\n"
        "    costs:\n"
        '      - {chip: Ascend 910B, per_accelerator_hour: "8.50", currency: CNY}\n'
        '      - {chip: H20, per_accelerator_hour: "7.20", currency: CNY}\n'
        "    nodes:\n"
        + node("cn-910b", n910, "Ascend 910B", "hccs")
        + node("cn-h20", nh20, "H20", "nvlink")
        + "  - name: cn-private\n    country: CN\n    region: Shanghai\n"
        "    owner_type: private\n    costs:\n"
        '      - {chip: H800 SXM, per_accelerator_hour: "14.00", currency: CNY}\n'
        "    nodes:\n"
        + node("cn-h800", nh800, "H800 SXM", "nvlink")
        + "  - name: sg-private\n    country: SG\n    region: Singapore\n"
        "    owner_type: private\n    costs:\n"
        '      - {chip: H100 SXM, per_accelerator_hour: "2.35", currency: USD}\n'
        "    nodes:\n" + node("sg-h100", nh100, "H100 SXM", "nvlink")
    )


# --- what-if changes ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Addition:
    where: str  # data center name or region
    chip: str
    count: int


@dataclass(frozen=True, slots=True)
class Removal:
    pattern: str = ""  # node name or glob
    where: str = ""
    chip: str = ""
    count: int = 0


def _count(text: str, option: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValidationError(f"{option}: count {text.strip()!r} is not a number", option) from None
    if value < 1:
        raise ValidationError(f"{option}: count must be at least 1", option)
    return value


def parse_addition(text: str) -> Addition:
    """``DATA_CENTER_OR_REGION:CHIP:COUNT``."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[0].strip() or not parts[1].strip():
        raise ValidationError(f"--add {text!r}: write DATA_CENTER:CHIP:COUNT", "--add")
    return Addition(parts[0].strip(), parts[1].strip(), _count(parts[2], "--add"))


def parse_removal(text: str) -> Removal:
    """A node name or glob, or ``DATA_CENTER_OR_REGION:CHIP:COUNT``."""
    if ":" not in text:
        if not text.strip():
            raise ValidationError("--remove: give a NODE or DATA_CENTER:CHIP:COUNT", "--remove")
        return Removal(pattern=text.strip())
    parts = text.split(":")
    if len(parts) != 3:
        why = f"--remove {text!r}: write NODE or DATA_CENTER:CHIP:COUNT"
        raise ValidationError(why, "--remove")
    return Removal("", parts[0].strip(), parts[1].strip(), _count(parts[2], "--remove"))


def _data_center(fleet: SimFleet, where: str, option: str) -> str:
    names = fleet.snapshot.data_centers
    if where in names:
        return where
    low = where.casefold()
    by_name = [n for n in names if n.casefold() == low]
    if len(by_name) == 1:
        return by_name[0]
    by_region = [n for n, r in fleet.regions.items() if r and r.casefold() == low]
    if len(by_region) == 1:
        return by_region[0]
    if len(by_region) > 1:
        raise ValidationError(
            f"region {where!r} holds several data centers "
            f"({', '.join(sorted(by_region))}); name one",
            f"{option} data center",
        )
    known = ", ".join(f"{n} ({fleet.regions[n]})" if fleet.regions.get(n) else n for n in names)
    raise ValidationError(f"unknown data center {where!r}; known: {known}", f"{option} data center")


def _slug(chip: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", chip.lower())


def apply_changes(
    fleet: SimFleet,
    additions: Sequence[Addition] = (),
    removals: Sequence[Removal] = (),
    catalog: ChipCatalog | None = None,
) -> SimFleet:
    """The fleet with ``removals`` then ``additions`` applied; ``ValidationError`` naming the
    option for an unknown data center or chip, or a removal that matches nothing."""
    cat = catalog if catalog is not None else load_catalog()
    nodes = list(fleet.nodes)
    for r in removals:
        if r.pattern:
            keep = [n for n in nodes if not fnmatch.fnmatchcase(n.name, r.pattern)]
            if len(keep) == len(nodes):
                raise ValidationError(f"--remove: no node matches {r.pattern!r}", "--remove")
            nodes = keep
            continue
        dc = _data_center(fleet, r.where, "--remove")
        chip = cat.get(r.chip, field="--remove chip").model
        mine = [n for n in nodes if n.data_center == dc and n.chip == chip]
        if not mine:
            raise ValidationError(f"--remove: {dc} has no {chip}", "--remove chip")
        gone: set[str] = set()
        left = r.count
        for n in reversed(mine):
            if left <= 0:
                break
            gone.add(n.name)
            left -= n.accelerators
        nodes = [n for n in nodes if n.name not in gone]
    taken = {n.name for n in nodes} | {n.name for n in fleet.nodes}
    for a in additions:
        dc = _data_center(fleet, a.where, "--add")
        spec = cat.get(a.chip, field="--add chip")
        view = fleet.snapshot.data_centers[dc]
        cost = cost_in(view, spec.model, main_currency(fleet.snapshot.data_centers.values()))
        stem = f"{dc}-sim-{_slug(spec.model)}"
        i, left = 0, a.count
        while left > 0:
            i += 1
            name = f"{stem}-{i:03d}"
            if name in taken:
                continue
            size = min(NODE_SIZE, left)
            left -= size
            taken.add(name)
            nodes.append(
                NodeView(name, dc, view.country, spec.model, size, stem, None,
                         spec.domestic_cn, cost, "ready")
            )  # fmt: skip
    if not any(n.state == "ready" for n in nodes):
        raise ValidationError("--remove: the change leaves no accelerators", "--remove")
    policy_nodes = tuple(PolicyNode(n.name, n.data_center, n.chip, n.accelerators) for n in nodes)
    return replace(fleet, nodes=tuple(nodes), snapshot=replace(fleet.snapshot, nodes=policy_nodes))
