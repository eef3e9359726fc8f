"""Injected faults are caught, and the report names the failing test and device."""

from __future__ import annotations

import pytest

from suanli.errors import ValidationError
from suanli.qualify.backends import make_backend
from suanli.qualify.faults import BitFlips, Decay, Fault, FaultyBackend, SlowDevice, parse_fault
from suanli.qualify.model import QualificationReport
from suanli.qualify.runner import run_suite
from suanli.qualify.thresholds import Thresholds
from tests.qualify.conftest import TIME_SCALE


def run_with(thresholds: Thresholds, *faults: Fault) -> QualificationReport:
    backend = FaultyBackend(make_backend("numpy", cpu_devices=2), faults)
    return run_suite(backend, "standard", None, thresholds, time_scale=TIME_SCALE)


def failed(report: QualificationReport) -> set[tuple[str, str | None]]:
    return {(m.test, m.device) for m in report.failures}


def test_a_slow_device_fails_peer_comparison_though_above_the_absolute_minimum(
    thresholds: Thresholds,
) -> None:
    report = run_with(thresholds, SlowDevice(1, 0.8))
    assert failed(report) == {("peer_comparison", "cpu:1")}
    peers = [m for m in report.failures if m.test == "peer_comparison"]
    assert {m.metric for m in peers} == {"matmul_fp32 / peer median", "matmul_fp64 / peer median"}
    for m in peers:
        assert m.value is not None
        assert m.value < 0.5
    slow = next(m for m in report.measurements if (m.test, m.device) == ("matmul_fp32", "cpu:1"))
    assert slow.status == "passed"  # the absolute threshold alone would not catch it
    assert "peer_comparison on cpu:1" in report.summary()
    assert "injected: slow:1:0.8" in report.backend


def test_bit_flips_fail_memory_integrity_with_the_mismatch_count(thresholds: Thresholds) -> None:
    report = run_with(thresholds, BitFlips(0, count=5))
    assert failed(report) == {("memory_integrity", "cpu:0")}
    (bad,) = report.failures
    assert bad.value == 5 * 4  # five words flipped after each of the four patterns
    assert "mismatches by pattern: zeros: 5, ones: 5" in bad.detail
    assert report.summary().startswith("failed: memory_integrity on cpu:0 (mismatched words 20")


def test_decay_fails_the_soak_as_throttling(thresholds: Thresholds) -> None:
    report = run_with(thresholds, Decay(0.9))
    assert failed(report) == {("soak", "cpu:0"), ("soak", "cpu:1")}
    for m in report.failures:
        assert m.detail.startswith("throttling: sustained drop of")
        assert m.samples[-1] < m.samples[0]
    matmul = [m for m in report.measurements if m.test.startswith("matmul_")]
    assert all(m.status == "passed" for m in matmul)  # decay happens under sustained load


def test_decay_of_one_device_names_only_that_device(thresholds: Thresholds) -> None:
    report = run_with(thresholds, Decay(0.9, device=1))
    assert failed(report) == {("soak", "cpu:1")}


def test_faults_combine(thresholds: Thresholds) -> None:
    report = run_with(thresholds, SlowDevice(0, 0.8), BitFlips(1, count=3))
    assert failed(report) == {("peer_comparison", "cpu:0"), ("memory_integrity", "cpu:1")}


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("slow:1:0.3", SlowDevice(1, 0.3)),
        ("slow:2", SlowDevice(2)),
        ("bitflip:0:16", BitFlips(0, 16)),
        ("bitflip:1", BitFlips(1)),
        ("decay", Decay()),
        ("decay:0.4", Decay(0.4)),
        ("decay:0.4:1", Decay(0.4, None, 1)),
    ],
)
def test_parse_fault(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault
    assert parse_fault(str(fault)) == fault


@pytest.mark.parametrize("text", ["slow", "slow:x", "bitflip:0:1:2", "melt:0", "decay:a"])
def test_parse_fault_refuses_bad_forms(text: str) -> None:
    with pytest.raises(ValidationError, match="use slow:DEVICE"):
        parse_fault(text)


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (SlowDevice(2, 0.5), "names device 2; this backend has 2 (cpu:0, cpu:1)"),
        (SlowDevice(0, 1.5), "fraction must be in (0, 1)"),
        (BitFlips(0, 0), "count must be at least 1"),
    ],
)
def test_faults_are_checked_against_the_backend(fault: Fault, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        FaultyBackend(make_backend("numpy", cpu_devices=2), [fault])
    assert words in info.value.message
