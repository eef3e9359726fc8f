"""What every CLI command shares: the API client from options/env, output helpers."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from suanli.client import ApiClient, ApiError

# Piped output (files, tests, less) gets wide tables instead of 80-column folding.
console = Console() if sys.stdout.isatty() else Console(width=220)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=220)

DEFAULT_SERVER = "http://127.0.0.1:8270"


def server_url() -> str:
    return os.environ.get("SUANLI_SERVER", DEFAULT_SERVER)


@contextmanager
def api() -> Iterator[ApiClient]:
    """A client for $SUANLI_SERVER with $SUANLI_TOKEN; API errors end the command cleanly."""
    client = ApiClient(server_url(), os.environ.get("SUANLI_TOKEN"))
    try:
        yield client
    except ApiError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        if exc.extra.get("suggestions"):
            err_console.print(f"did you mean: {', '.join(exc.extra['suggestions'])}")
        if exc.status == 401 and not os.environ.get("SUANLI_TOKEN"):
            err_console.print("hint: export SUANLI_TOKEN=<the token `suanli up` printed>")
        raise typer.Exit(1) from None
    except httpx.TransportError as exc:
        err_console.print(f"[red]error:[/red] cannot reach {server_url()}: {exc}")
        raise typer.Exit(2) from None
    finally:
        client.close()


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    t = Table(title=title, show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)


JsonOpt = typer.Option(False, "--json", help="print JSON instead of a table")
OverrideOpt = typer.Option(
    help="push through a change a domestic-share rule refuses (logged and audited)"
)
ThresholdsOpt = typer.Option(
    exists=True,
    dir_okay=False,
    envvar="SUANLI_QUALIFY_THRESHOLDS",
    help="qualification thresholds file [packaged defaults]",
)
