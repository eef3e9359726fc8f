"""`suanli sim ...` through typer's runner, on small slices of the real traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli.main import app
from suanli.sim.gavel_trace import GavelTraceJob, job_template, write_gavel_trace

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
PHILLY = DATA / "traces" / "philly" / "philly.csv"
ALIBABA = DATA / "traces" / "alibaba-gpu-2023"
MATRIX = DATA / "gavel" / "simulation_throughputs.json"
MIXED = ROOT / "examples" / "fleet-mixed.yaml"
needs_philly = pytest.mark.skipif(not PHILLY.exists(), reason="Philly trace not present")
needs_alibaba = pytest.mark.skipif(not ALIBABA.exists(), reason="Alibaba 2023 trace not present")
needs_gavel = pytest.mark.skipif(not MATRIX.exists(), reason="Gavel throughputs not present")

runner = CliRunner()


def sim(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["sim", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_report(out: Path) -> dict[str, object]:
    for name in ("summary.json", "jobs.csv", "jct_cdf.png", "utilization.png", "queue.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "jct_cdf.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    return summary


@needs_philly
def test_philly_slice(tmp_path: Path) -> None:
    code, out, err = sim("philly", "--trace", str(PHILLY), "--jobs", "300", "--gpus", "256",
                         "--out", str(tmp_path))  # fmt: skip
    assert code == 0, err
    assert "compliance violations" in out
    assert "utilization: Ascend 910B" in out
    summary = assert_report(tmp_path)
    assert summary["jobs"] == {
        "total": 300, "finished": 300, "started": 300, "never_started": 0,
        "preemptions": 0, "dropped": {},
    }  # fmt: skip
    assert summary["violations"]["count"] == 0  # type: ignore[index]
    lines = (tmp_path / "jobs.csv").read_text().splitlines()
    assert lines[0].startswith("id,tenant,kind")
    assert len(lines) == 301
    assert str(ROOT) not in (tmp_path / "report.html").read_text()


@needs_philly
def test_philly_json(tmp_path: Path) -> None:
    code, out, err = sim("philly", "--trace", str(PHILLY), "--jobs", "100", "--gpus", "256",
                         "--policy", "domestic-first", "--json", "--out", str(tmp_path))  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["policy"] == "domestic-first"
    assert data["jobs"]["total"] == 100


@needs_alibaba
def test_alibaba_slice(tmp_path: Path) -> None:
    code, _out, err = sim(
        "alibaba", "--pods", str(ALIBABA / "openb_pod_list_default.csv"),
        "--nodes", str(ALIBABA / "openb_node_list_all_node.csv"), "--jobs", "400",
        "--mode", "replay", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    summary = assert_report(tmp_path)
    assert summary["jobs"]["total"] == 400  # type: ignore[index]
    assert summary["capacity"]["Tesla T4"] == 842  # type: ignore[index]
    assert summary["violations"]["count"] == 0  # type: ignore[index]


@needs_alibaba
def test_alibaba_fill_compares_policies(tmp_path: Path) -> None:
    code, out, err = sim(
        "alibaba", "--pods", str(ALIBABA / "openb_pod_list_default.csv"),
        "--policies", "binpack,spread", "--until", "0.6", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    assert "binpack" in out
    assert "spread" in out
    assert (tmp_path / "fill.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
    runs = json.loads((tmp_path / "summary.json").read_text())
    assert [r["policy"] for r in runs] == ["binpack", "spread"]
    for r in runs:
        assert r["capacity_gpus"] == 6212
        assert r["violations"] == 0
        assert 0.5 < r["allocated_final"] < 0.61  # the last pod may cross 60%


def test_alibaba_fill_refuses_an_unknown_policy() -> None:
    code, _out, err = sim("alibaba", "--policies", "binpack,nope")
    assert code == 2
    assert "--policies" in err
    assert "nope" in err
    assert "Traceback" not in err


def test_llm(tmp_path: Path) -> None:
    code, _out, err = sim("llm", "--count", "150", "--gpus", "512", "--out", str(tmp_path))
    assert code == 0, err
    summary = assert_report(tmp_path)
    assert summary["jobs"]["total"] == 150  # type: ignore[index]
    assert summary["violations"]["count"] == 0  # type: ignore[index]


@needs_gavel
def test_gavel_trace_file(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    jobs = []
    for i in range(20):
        job_type = "ResNet-50 (batch size 64)"
        command, workdir, steps_arg, needs = job_template(job_type)
        jobs.append(GavelTraceJob(job_type, command, workdir, steps_arg, needs, 5000,
                                  1 + (i % 2), 1.0, None, 60.0 * i))  # fmt: skip
    write_gavel_trace(trace, jobs)
    out = tmp_path / "out"
    code, _text, err = sim("gavel", str(trace), "--matrix", str(MATRIX), "--gpus", "64",
                          "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert assert_report(out)["jobs"]["finished"] == 20  # type: ignore[index]


def test_whatif_shows_the_added_accelerators(tmp_path: Path) -> None:
    code, out, err = sim(
        "whatif", "--fleet", str(MIXED), "--add", "Ningxia:Ascend 910B:512", "--jobs", "150",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    row = next(line for line in out.splitlines() if "accelerators: Ascend 910B" in line)
    assert "128" in row
    assert "640" in row
    assert "+512" in row
    assert "compliance violations" in out
    assert "CN-STATE-DOMESTIC-COUNT" in out
    page = (tmp_path / "report.html").read_text()
    assert "baseline" in page
    assert "changed" in page
    assert page.count("data:image/png;base64,") == 3
    assert (tmp_path / "jobs-baseline.csv").exists()
    assert (tmp_path / "jobs-changed.csv").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["changed"]["capacity"]["Ascend 910B"] == 640


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--add", "Mars:Ascend 910B:8"], "unknown data center 'Mars'"),
        (["--add", "Ningxia:Ascend 911B:8"], "--add chip: unknown chip 'Ascend 911B'"),
        (["--add", "Ningxia:H20:x"], "not a number"),
        (["--remove", "zz-*"], "no node matches"),
        (["--add", "Ningxia:H20:8", "--trace", "nope"], "--trace"),
        (["--add", "Ningxia:H20:8", "--policy", "fastest"], "unknown policy 'fastest'"),
        (["--add", "Ningxia:H20:8", "--residency", "5"], "--residency is a share"),
        (["--add", "Ningxia:H20:8", "--interval", "nan"], "--interval"),
    ],
)
def test_whatif_errors_exit_2_without_traceback(args: list[str], words: str) -> None:
    code, out, err = sim("whatif", "--fleet", str(MIXED), *args)
    assert code == 2
    assert words in err
    assert "Traceback" not in out + err


def test_a_bad_fleet_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("data_centers:\n  - name: x\n    country: ZZ\n    owner_type: state\n")
    code, _out, err = sim("llm", "--fleet", str(bad), "--count", "5")
    assert code == 2
    assert "data_centers[0].country" in err
    assert "line 3" in err
    code, _out, err = sim("llm", "--fleet", str(tmp_path / "missing.yaml"), "--count", "5")
    assert code == 2
    assert "cannot read" in err


def test_a_missing_trace_is_a_clear_error(tmp_path: Path) -> None:
    code, _out, err = sim("philly", "--trace", str(tmp_path / "none.csv"))
    assert code == 2
    assert "does not exist" in err
