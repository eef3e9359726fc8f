"""The report model: JSON round trip, verdict, summary naming failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from suanli.errors import ValidationError
from suanli.qualify.model import Measurement, QualificationReport

T0 = datetime(2026, 11, 25, 4, 10, 49, 123456, tzinfo=UTC)


def m(status: str = "passed", **kw: object) -> Measurement:
    fields: dict[str, object] = {
        "test": "matmul_fp32",
        "device": "cpu:0",
        "metric": "throughput",
        "value": 41.5,
        "unit": "GFLOPS",
        "threshold": 5.0,
        "rule": "throughput >= 5 GFLOPS",
        "status": status,
    }
    fields.update(kw)
    return Measurement(**fields)  # type: ignore[arg-type]


def report(*measurements: Measurement) -> QualificationReport:
    return QualificationReport(
        level="standard",
        backend="numpy",
        chip=None,
        devices=("cpu:0", "cpu:1"),
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3.5),
        measurements=measurements,
    )


def test_json_round_trip_through_text() -> None:
    original = report(
        m(),
        m("failed", device="cpu:1", value=1.25, detail="slow"),
        m(
            "skipped",
            test="all_reduce",
            device=None,
            value=None,
            unit="",
            threshold=None,
            detail="one device",
        ),
        m(
            test="soak",
            metric="ratio",
            value=0.97,
            unit="x",
            threshold=0.75,
            samples=(40.0, 41.5, 39.25),
            sample_interval_s=0.5,
            sample_unit="GFLOPS",
        ),
    )
    data = json.loads(json.dumps(original.to_json()))
    assert data["passed"] is False
    assert data["summary"].startswith("failed: matmul_fp32 on cpu:1")
    again = QualificationReport.from_json(data)
    assert again == original
    assert again.started_at.tzinfo is not None


def test_verdict_needs_a_pass_and_no_failure() -> None:
    assert report(m()).passed
    assert not report().passed
    assert not report(m("skipped", value=None)).passed
    assert not report(m(), m("failed", device="cpu:1")).passed
    assert report(m(), m("skipped", value=None)).passed


def test_no_pass_without_a_measurement() -> None:
    with pytest.raises(ValueError, match="without a measured value"):
        m(value=None)


def test_summary_names_each_failed_test_and_device() -> None:
    r = report(
        m(),
        m("failed", device="cpu:1", value=1.25, detail="checksum failed"),
        m(
            "failed",
            test="memory_integrity",
            device="cpu:0",
            metric="mismatched words",
            value=20,
            unit="words",
            threshold=0,
        ),
    )
    assert [f.where for f in r.failures] == ["matmul_fp32 on cpu:1", "memory_integrity on cpu:0"]
    text = r.summary()
    assert text.startswith(
        "failed: matmul_fp32 on cpu:1 (throughput 1.25 GFLOPS, threshold 5: checksum failed)"
    )
    assert "memory_integrity on cpu:0 (mismatched words 20 words, threshold 0)" in text
    assert "[1 passed, 2 failed, 0 skipped]" in text
    assert report(m()).summary().startswith("passed: standard qualification on 2 device(s)")
    assert report().summary().startswith("failed: nothing was measured")


@pytest.mark.parametrize(
    ("change", "field"),
    [({"level": "extreme"}, "level"), ({"started_at": "yesterday"}, "started_at")],
)
def test_from_json_refuses_bad_documents(change: dict[str, str], field: str) -> None:
    data = report(m()).to_json() | change
    with pytest.raises(ValidationError) as info:
        QualificationReport.from_json(data)
    assert info.value.field == field


def test_from_json_refuses_unknown_status() -> None:
    data = report(m()).to_json()
    data["measurements"][0]["status"] = "maybe"
    with pytest.raises(ValidationError, match="maybe"):
        QualificationReport.from_json(data)
