"""Loaders: Gavel's throughput matrix, Gavel's 10-field trace format, the Philly CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suanli.perf.gavel import load_gavel_matrix, parse_job_key
from suanli.sim.gavel_trace import (
    GavelTraceJob,
    format_trace_line,
    job_template,
    parse_trace_line,
    read_gavel_trace,
    write_gavel_trace,
)
from suanli.sim.philly import arrival_offsets, load_philly, usable_jobs

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GAVEL_FILE = DATA / "gavel" / "simulation_throughputs.json"
PHILLY_FILE = DATA / "traces" / "philly" / "philly.csv"

# --- Gavel's throughput matrix ------------------------------------------------------


def _tiny_matrix(tmp_path: Path) -> Path:
    raw = {
        "v100": {
            "('A', 1)": {"null": 10.0, "('B', 1)": [6.0, 4.0]},
            "('A', 2)": {"null": 18.0},
            "('B', 1)": {"null": 5.0, "('A', 1)": [4.0, 6.0]},
        },
        "k80": {
            "('A', 1)": {"null": 2.0},
            "('A', 2)": {"null": 0.0},
            "('B', 1)": {"null": 4.0},
        },
    }
    path = tmp_path / "m.json"
    path.write_text(json.dumps(raw))
    return path


def test_matrix_loads_solo_and_colocated_throughputs(tmp_path: Path) -> None:
    m = load_gavel_matrix(_tiny_matrix(tmp_path))
    assert m.chips == ("v100", "k80")
    assert m.job_types == ("A", "B")
    assert m.throughput("A", "v100") == 10.0
    assert m.throughput("A", "v100", scale_factor=2) == 18.0
    assert m.throughput("A", "k80", 2) == 0.0
    assert m.scale_factors("A") == (1, 2)
    assert m.scale_factors("B") == (1,)
    assert m.colocated("A", "B", "v100") == (6.0, 4.0)
    with pytest.raises(KeyError, match="scale factor 4"):
        m.throughput("A", "v100", 4)
    with pytest.raises(KeyError, match="unknown chip"):
        m.throughput("A", "h100")


@pytest.mark.parametrize(
    "bad",
    [
        {"v100": {"A": {"null": 1.0}}},
        {"v100": {"('A', 1)": {"other": 1.0}}},
        {"v100": {"('A', 1)": {"null": -1.0}}},
        {"v100": {"('A', 0)": {"null": 1.0}}},
        [],
    ],
)
def test_matrix_rejects_malformed_files(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"expected|missing|throughput|key"):
        load_gavel_matrix(path)


def test_job_key_parsing() -> None:
    assert parse_job_key("('ResNet-18 (batch size 16)', 4)") == ("ResNet-18 (batch size 16)", 4)
    with pytest.raises(ValueError, match="not a"):
        parse_job_key("__import__('os')")


@pytest.mark.skipif(not GAVEL_FILE.exists(), reason="Gavel data not present")
def test_the_real_gavel_matrix() -> None:
    m = load_gavel_matrix(GAVEL_FILE)
    assert {"k80", "p100", "v100"} <= set(m.chips)
    assert len(m.job_types) == 26
    assert m.throughput("ResNet-18 (batch size 16)", "v100") == pytest.approx(32.3534, rel=1e-4)
    fleet = ("v100", "p100", "k80")
    assert m.scale_factors("ResNet-50 (batch size 64)", fleet) == (1, 2, 4, 8)
    assert m.scale_factors("A3C", fleet) == (1,)
    distributed = [t for t in m.job_types if 8 in m.scale_factors(t, fleet)]
    assert len(distributed) == 19
    assert len([t for t in m.job_types if 8 in m.scale_factors(t)]) == 17
    # the matrix is heterogeneous in the way Gavel exploits: P100 beats V100 on some jobs
    rec = "Recommendation (batch size 512)"
    assert m.throughput(rec, "p100") > m.throughput(rec, "v100")


# --- Gavel's trace format -------------------------------------------------------------


def test_trace_round_trip(tmp_path: Path) -> None:
    command, workdir, steps_arg, needs = job_template("ResNet-50 (batch size 64)")
    jobs = [
        GavelTraceJob(
            "ResNet-50 (batch size 64)",
            command,
            workdir,
            steps_arg,
            needs,
            123456,
            4,
            1.0,
            None,
            0.0,
        ),
        GavelTraceJob("A3C", *job_template("A3C"), 99, 1, 5.0, 2.0, 1234.5678),
    ]
    path = tmp_path / "t.trace"
    assert write_gavel_trace(path, jobs) == 2
    lines = path.read_text().splitlines()
    assert all(len(line.split("\t")) == 10 for line in lines)
    assert lines[0].split("\t")[4:] == ["1", "123456", "4", "1", "-1", "0.0"]
    assert read_gavel_trace(path) == jobs
    assert workdir == "image_classification/imagenet"
    assert job_template("A3C")[3] is False


def test_trace_reads_gavel_style_lines() -> None:
    line = "LM (batch size 20)\tpython main.py\tlanguage_modeling\t--steps\t1\t5000\t2\t1\t-1.000000\t3600\n"
    job = parse_trace_line(line)
    assert (job.job_type, job.total_steps, job.scale_factor, job.slo, job.arrival_time) == (
        "LM (batch size 20)",
        5000,
        2,
        None,
        3600.0,
    )
    assert format_trace_line(job).split("\t")[:8] == line.split("\t")[:8]


@pytest.mark.parametrize(
    "line",
    ["only\tthree\tfields", "A\tc\tw\t-n\t2\t10\t1\t1\t-1\t0", "A\tc\tw\t-n\t1\tx\t1\t1\t-1\t0"],
)
def test_trace_rejects_bad_lines(line: str) -> None:
    with pytest.raises(ValueError, match="line 7"):
        parse_trace_line(line, 7)


def test_trace_refuses_tabs_in_fields() -> None:
    job = GavelTraceJob("A\tB", "c", "w", "-n", False, 1, 1, 1.0, None, 0.0)
    with pytest.raises(ValueError, match="tab"):
        format_trace_line(job)


# --- Philly -------------------------------------------------------------------------------


def test_philly_loader(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-09 07:01:55,66.0,1,66.0,11cb48\n"
        "2017-10-09 06:01:55,100.0,16,1600.0,6214e9\n"
        "2017-10-09 08:01:55,0.0,2,0.0,6214e9\n"
    )
    jobs = load_philly(path)
    assert [j.num_gpus for j in jobs] == [1, 16, 2]
    assert jobs[0].duration == 66.0
    assert jobs[1].cluster == "6214e9"
    assert arrival_offsets(jobs) == [3600.0, 0.0, 7200.0]
    assert [j.num_gpus for j in usable_jobs(jobs)] == [1, 16]
    assert [j.num_gpus for j in usable_jobs(jobs, (1, 2, 4, 8))] == [1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a,b\n", "header"),
        ("timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09,1,1,1,x\n", "line 2"),
        ("timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,1,1.5,1,x\n", "line 2"),
        ("timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,-1,1,1,x\n", "line 2"),
    ],
)
def test_philly_loader_rejects_bad_rows(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "p.csv"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        load_philly(path)


@pytest.mark.skipif(not PHILLY_FILE.exists(), reason="Philly trace not present")
def test_the_real_philly_trace() -> None:
    jobs = load_philly(PHILLY_FILE)
    assert len(jobs) == 82_247
    assert max(j.num_gpus for j in jobs) == 128
    assert len(usable_jobs(jobs, (1, 2, 4, 8))) == 81_958
