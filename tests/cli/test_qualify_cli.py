"""`suanli qualify` on this machine: a real CPU report, and injected faults named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "suanli"
pytestmark = pytest.mark.slow


def qualify(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "qualify", "--out", str(tmp_path), "--time-scale", "0.05", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_standard_run_writes_json_and_html(tmp_path: Path) -> None:
    done = qualify(tmp_path, "--level", "standard", "--cpu-devices", "2", "--backend", "numpy")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert report["level"] == "standard"
    tests = {m["test"] for m in report["measurements"]}
    assert {
        "matmul_fp32",
        "memory_bandwidth",
        "memory_integrity",
        "all_reduce",
        "soak",
        "peer_comparison",
    } <= tests
    assert all(m["rule"] for m in report["measurements"])
    assert all(m["value"] is not None for m in report["measurements"] if m["status"] == "passed")
    assert "data:image/png;base64," in next(tmp_path.glob("*.html")).read_text()


def test_injected_bit_flips_fail_and_are_named(tmp_path: Path) -> None:
    done = qualify(
        tmp_path,
        "--level",
        "standard",
        "--cpu-devices",
        "2",
        "--backend",
        "numpy",
        "--inject",
        "bitflip:1:3",
    )
    assert done.returncode == 1
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    failed = [(m["test"], m["device"]) for m in report["measurements"] if m["status"] == "failed"]
    assert failed == [("memory_integrity", "cpu:1")] or ("memory_integrity", "cpu:1") in failed


def test_bad_fault_is_a_clear_error(tmp_path: Path) -> None:
    done = qualify(tmp_path, "--level", "quick", "--backend", "numpy", "--inject", "bitflip:7")
    assert done.returncode == 2
    assert "device 7" in done.stderr
