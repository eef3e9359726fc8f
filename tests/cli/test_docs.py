"""docs/cli.md is generated from the commands themselves and must not go stale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).parents[2] / "docs" / "cli.md"
TYPER = Path(sys.executable).parent / "typer"


def test_cli_reference_is_current(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    subprocess.run(
        [str(TYPER), "suanli.cli.main", "utils", "docs", "--name", "suanli", "--output", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert out.read_text() == DOCS.read_text(), (
        "docs/cli.md is stale: run `.venv/bin/typer suanli.cli.main utils docs --name suanli "
        "--output docs/cli.md`"
    )
