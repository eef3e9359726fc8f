"""`suanli fleet apply` and `suanli fleet import-alibaba`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from suanli.cli.common import OverrideOpt, api, console, err_console
from suanli.importers import alibaba

fleet_app = typer.Typer(help="Declarative fleet files: create or update many nodes at once.")


def _report(result: dict[str, Any]) -> None:
    verb = "would" if result["dry_run"] else "did"
    console.print(
        f"data centers: {len(result['created_data_centers'])} created, "
        f"{len(result['updated_data_centers'])} updated, "
        f"{result['unchanged_data_centers']} unchanged"
        f"\nnodes: {result['created_nodes']} created, {len(result['updated_nodes'])} updated, "
        f"{result['unchanged_nodes']} unchanged  ({verb} apply)"
    )


def _apply(
    text: str, dry_run: bool, label: str, override_reason: str | None = None
) -> dict[str, Any]:
    params = {"dry_run": str(dry_run).lower()}
    if override_reason:
        params["override_reason"] = override_reason
    with api() as client, console.status(f"applying {label} ..."):
        result: dict[str, Any] = client.post(
            "/v1/fleet/apply",
            None,
            content=text.encode(),
            headers={"content-type": "application/yaml"},
            params=params,
        )
    return result


@fleet_app.command("apply")
def apply(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[bool, typer.Option(help="show what would change; write nothing")] = False,
    override_reason: Annotated[str | None, OverrideOpt] = None,
) -> None:
    """Apply a fleet file (YAML). All of it is applied, or nothing if any row is bad."""
    _report(_apply(path.read_text(encoding="utf-8"), dry_run, str(path), override_reason))


@fleet_app.command("import-alibaba")
def import_alibaba(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    data_center: Annotated[str, typer.Option(help="data center to put the nodes in")] = "alibaba",
    country: str = "CN",
    owner_type: str = "private",
    operator: str = "Alibaba Cloud",
    map_model: Annotated[
        list[str] | None,
        typer.Option("--map", help="TRACE_MODEL=CATALOG_CHIP for anonymised models, repeatable"),
    ] = None,
    dry_run: bool = False,
) -> None:
    """Import the Alibaba fleet trace (node_info_df.csv) as one data center."""
    mapping: dict[str, str] = {}
    for item in map_model or []:
        src, sep, dst = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: write TRACE_MODEL=CATALOG_CHIP")
        mapping[src.strip()] = dst.strip()
    dc = {"name": data_center, "country": country, "owner_type": owner_type, "operator": operator}
    with path.open(encoding="utf-8") as fh:
        result = alibaba.convert(fh, dc, mapping)
    for model, n in sorted(result.skipped.items()):
        err_console.print(f"skipped {n} nodes of {model!r}: not a catalog chip (use --map)")
    console.print(f"{result.nodes} nodes, {result.accelerators} accelerators to apply")
    _report(_apply(yaml.safe_dump(result.fleet, sort_keys=False), dry_run, path.name))
