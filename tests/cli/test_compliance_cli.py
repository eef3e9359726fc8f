"""The compliance commands as an operator types them, against a real `suanli up`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.test_compliance import TEN_H100
from tests.cli.test_up import EXAMPLE, start, stop

pytestmark = pytest.mark.slow


def test_compliance_tour(tmp_path: Path) -> None:
    up = start(tmp_path / "home", "--no-agent")
    try:
        up.cli("fleet", "apply", str(EXAMPLE))
        extra = tmp_path / "ten-h100.yaml"
        extra.write_text(TEN_H100)
        refused = up.cli("fleet", "apply", str(extra), check=False)
        assert refused.returncode == 1
        assert "CN-STATE-DOMESTIC-COUNT" in refused.stderr
        assert "46.15% after" in refused.stderr

        up.cli("tenants", "create", "acme", "--country", "CN", "--verified")
        up.cli("datasets", "create", "acme", "cn-chat", "--country", "CN")
        where = up.cli(
            "compliance",
            "evaluate",
            "--tenant",
            "acme",
            "--accelerators",
            "8",
            "--dataset",
            "cn-chat",
        ).stdout
        assert "sg-jurong" in where
        assert "RESIDENCY" in where
        job = [
            "workloads",
            "submit",
            "acme",
            "ft-1",
            "--accelerators",
            "8",
            "--kind",
            "fine_tune",
            "--dataset",
            "cn-chat",
        ]
        assert "RESIDENCY" in up.cli(*job, "--node", "sg-h100-01", check=False).stderr
        up.cli(*job, "--node", "sh-h800-01")
        assert (
            "cn-lora (CN)"
            in up.cli("workloads", "finish", "acme", "ft-1", "--output", "cn-lora=adapter").stdout
        )
        export = up.cli("artifacts", "export", "acme", "cn-lora", "--to", "SG", check=False)
        assert export.returncode == 1
        assert "RESIDENCY" in export.stderr

        plot = tmp_path / "shares.png"
        text = up.cli("compliance", "report", "--plot", str(plot)).stdout
        assert "no published TFLOPS for Ascend 910B" in text
        assert "CN-STATE-DOMESTIC-COUNT: compliant" in text
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        csv = up.cli("compliance", "report", "--csv").stdout.splitlines()
        assert csv[0].startswith("data_center,")
        assert any(line.startswith("nx-zhongwei,CN,state,128,96,96,0.750000") for line in csv)
        assert "version: example-2026.1" in up.cli("compliance", "rules").stdout
    finally:
        stop(up)
