"""`solewatch bench soak` keeps working: a tiny run, figures checked for sense, never for speed."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from bench.soak import least_squares_slope

pytestmark = pytest.mark.slow


def test_soak_bench_samples_rss_and_latency_per_period(tmp_path):
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "bench",
            "soak",
            "--minutes",
            "0.04",
            "--sample-every",
            "1.2",
            "--clients",
            "2",
            "--connections",
            "20",
            "--rate",
            "500",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = orjson.loads(out.read_bytes())
    assert figures["samples"] == 2 == len(figures["per_sample_rss_mb"]) == len(figures["per_sample_p99_ms"])
    assert 0 < figures["per_sample_minute"][0] < figures["per_sample_minute"][1] == figures["minutes"]
    assert all(rss > 0 for rss in figures["per_sample_rss_mb"])
    assert all(p99 > 0 for p99 in figures["per_sample_p99_ms"])
    assert figures["p99_first_third_ms"] == figures["per_sample_p99_ms"][0]  # two samples: a third is one
    assert figures["p99_last_third_ms"] == figures["per_sample_p99_ms"][1]
    minutes, rss = figures["per_sample_minute"], figures["per_sample_rss_mb"]
    slope = (rss[1] - rss[0]) / ((minutes[1] - minutes[0]) / 60)  # two points: the line through both
    assert figures["rss_slope_mb_per_h"] == pytest.approx(slope, abs=0.02 * abs(slope) + 1)
    assert figures["missing"] == 0 and figures["dashboards_cut"] == 0
    assert "RSS slope" in done.stdout and "p99 drift" in done.stdout


def test_the_rss_slope_is_the_least_squares_line():
    assert least_squares_slope([(0, 100.0), (60, 101.0), (120, 102.0)]) == pytest.approx(1 / 60)
    assert least_squares_slope([(0, 100.0), (60, 103.0), (120, 100.0)]) == 0
    assert least_squares_slope([(0, 100.0)]) == 0
