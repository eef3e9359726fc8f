"""The suite on the NumPy CPU backend: real measurements on this machine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import pytest

from suanli.catalog.chips import load_catalog
from suanli.qualify.backends import NumpyBackend, UnsupportedError, make_backend
from suanli.qualify.backends.base import MatmulRun
from suanli.qualify.model import QualificationReport
from suanli.qualify.runner import QUICK_TESTS, TESTS, run_suite
from suanli.qualify.thresholds import Thresholds
from tests.qualify.conftest import TIME_SCALE


def standard(thresholds: Thresholds, cpu_devices: int = 2) -> QualificationReport:
    backend = make_backend("numpy", cpu_devices=cpu_devices)
    return run_suite(backend, "standard", None, thresholds, time_scale=TIME_SCALE)


def assert_honest(report: QualificationReport) -> None:
    for m in report.measurements:
        assert m.rule, m
        if m.status == "passed":
            assert m.value is not None, m
            assert m.threshold is not None, m
        if m.status == "skipped":
            assert m.detail, m  # a reason


def test_quick_level_passes_on_this_machine(thresholds: Thresholds) -> None:
    calls: list[tuple[str, int, int]] = []
    report = run_suite(
        make_backend("numpy"), "quick", None, thresholds, progress=lambda *a: calls.append(a)
    )
    assert report.passed, report.summary()
    assert {m.test for m in report.measurements} == set(QUICK_TESTS)
    assert calls == [("devices", 0, 3), ("runtime", 1, 3), ("memory_size", 2, 3), ("done", 3, 3)]
    assert report.duration_s < 5
    assert_honest(report)


def test_standard_level_on_two_cpu_devices_runs_every_test(thresholds: Thresholds) -> None:
    report = standard(thresholds)
    assert report.passed, report.summary()
    assert report.devices == ("cpu:0", "cpu:1")
    assert_honest(report)
    by_test: dict[str, list[Any]] = {}
    for m in report.measurements:
        by_test.setdefault(m.test, []).append(m)
    assert set(by_test) == set(TESTS) - {"matmul"} | {"matmul_fp32", "matmul_fp64"}
    for test in ("matmul_fp32", "matmul_fp64", "memory_bandwidth", "memory_integrity", "soak"):
        assert [m.device for m in by_test[test]] == ["cpu:0", "cpu:1"], test
        assert all(m.status == "passed" for m in by_test[test]), test
    (reduce,) = by_test["all_reduce"]
    assert reduce.status == "passed"
    assert reduce.value is not None
    assert reduce.value > 0
    assert "x 2(n-1)/n" in reduce.detail
    peers = by_test["peer_comparison"]
    assert {(m.device, m.metric) for m in peers} == {
        (d, f"matmul_{p} / peer median") for d in ("cpu:0", "cpu:1") for p in ("fp32", "fp64")
    }
    assert all(m.status == "passed" for m in peers)
    for soak in by_test["soak"]:
        assert len(soak.samples) == 30
        assert soak.sample_interval_s > 0
        assert soak.sample_unit == "GFLOPS"
    fp32 = by_test["matmul_fp32"][0]
    assert fp32.unit == "GFLOPS"
    assert fp32.value is not None
    assert fp32.value >= 5


def test_one_device_skips_collective_and_peers_with_a_reason(thresholds: Thresholds) -> None:
    report = standard(thresholds, cpu_devices=1)
    assert report.passed, report.summary()
    skipped = {m.test: m.detail for m in report.measurements if m.status == "skipped"}
    assert skipped["all_reduce"] == "all-reduce needs 2 or more devices; this node has 1"
    assert "needs 2 or more identical devices" in skipped["peer_comparison"]


def test_healthy_runs_never_fail(thresholds: Thresholds) -> None:
    for _ in range(5):
        report = standard(thresholds)
        assert report.failures == [], report.summary()


class FakeAccelerator(NumpyBackend):
    """The CPU pretending to be an accelerator: bf16 is an fp32 matmul, fp8 is missing."""

    kind: Literal["cpu", "accelerator"] = "accelerator"
    precisions: tuple[str, ...] = ("bf16", "fp8")

    def matmul(self, devices: Sequence[int], precision: str, n: int, seconds: float) -> MatmulRun:
        if precision == "fp8":
            raise UnsupportedError("fp8 matmul needs a CUDA device of compute capability 8.9+")
        return super().matmul(devices, "fp32", n, seconds)


def test_accelerators_are_held_to_the_catalog(thresholds: Thresholds) -> None:
    h100 = load_catalog().get("H100 SXM")
    report = run_suite(FakeAccelerator(2), "standard", h100, thresholds, time_scale=TIME_SCALE)
    assert report.chip == "H100 SXM"
    status = {(m.test, m.device): m for m in report.measurements}
    bf16 = status[("matmul_bf16", "cpu:0")]
    assert bf16.status == "failed"
    assert bf16.unit == "TFLOPS"
    assert bf16.threshold == pytest.approx(494.5)
    fp8 = status[("matmul_fp8", "cpu:1")]
    assert (fp8.status, fp8.value) == ("skipped", None)
    assert "compute capability" in fp8.detail
    assert status[("memory_size", "cpu:0")].status == "failed"  # far below 0.9 x 80 GiB
    assert "matmul_bf16 on cpu:0" in report.summary()
    assert not report.passed


def test_without_a_catalog_figure_a_measurement_is_skipped_not_passed(
    thresholds: Thresholds,
) -> None:
    report = run_suite(FakeAccelerator(1), "quick", None, thresholds)
    size = next(m for m in report.measurements if m.test == "memory_size")
    assert size.status == "skipped"
    assert size.value is not None
    assert size.value > 0
    assert "no chip given" in size.rule


class Crashing(NumpyBackend):
    def device_copy(self, device: int, nbytes: int, seconds: float) -> float:
        raise RuntimeError("device lost")


def test_a_test_that_crashes_fails_naming_the_error(thresholds: Thresholds) -> None:
    report = run_suite(Crashing(1), "standard", None, thresholds, time_scale=TIME_SCALE)
    (failure,) = report.failures
    assert failure.test == "memory_bandwidth"
    assert failure.detail == "RuntimeError: device lost"
    assert {m.test for m in report.measurements} >= {"soak", "memory_integrity"}
