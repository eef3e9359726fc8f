"""The HTML report: self-contained, every measurement, the soak plot as an embedded PNG."""

from __future__ import annotations

import base64
import re
from dataclasses import replace

from suanli.qualify.backends import make_backend
from suanli.qualify.faults import FaultyBackend, SlowDevice
from suanli.qualify.html import render_html
from suanli.qualify.runner import run_suite
from suanli.qualify.thresholds import Thresholds
from tests.qualify.conftest import TIME_SCALE


def test_html_has_summary_table_and_soak_png(thresholds: Thresholds) -> None:
    backend = FaultyBackend(make_backend("numpy", cpu_devices=2), [SlowDevice(1, 0.8)])
    report = run_suite(backend, "standard", None, thresholds, time_scale=TIME_SCALE)
    page = render_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert "failed: peer_comparison on cpu:1" in page
    assert page.count("<tr class=") == len(report.measurements)
    for test in ("matmul_fp32", "memory_integrity", "all_reduce", "soak", "peer_comparison"):
        assert f"<td>{test}</td>" in page
    (png,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert base64.b64decode(png).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in page
    assert "https://" not in page


def test_html_escapes_text_and_says_when_there_is_no_soak(thresholds: Thresholds) -> None:
    report = run_suite(make_backend("numpy"), "quick", None, thresholds)
    first = replace(report.measurements[0], detail="<script>alert(1)</script>")
    page = render_html(replace(report, measurements=(first, *report.measurements[1:])))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "No soak samples at this level." in page
    assert "data:image/png" not in page
