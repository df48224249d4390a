"""`solewatch bench fleet` keeps working: a tiny run, figures checked for sense, never for speed."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.slow


def test_fleet_bench_times_every_frame_against_the_baseline(tmp_path):
    out = tmp_path / "fleet.json"
    args = ("--connections", "200", "--seconds", "2", "--warmup", "0.5", "--json", str(out))
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "fleet", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = orjson.loads(out.read_bytes())
    assert figures["connections"] == 200
    assert figures["logged_in"] == figures["baseline_logged_in"] == 200
    # Every frame written was acknowledged, by both servers, with status 0.
    assert figures["lost"] == figures["baseline_lost"] == 0
    assert figures["refused"] == figures["disconnected"] == 0
    # One POSITION a second per insole, and a few HEARTBEATs and ACTIVITYs besides: ~200-215 frames/s each.
    for key in ("acked_fps", "baseline_acked_fps"):
        assert 150 <= figures[key] <= 260, (key, figures[key])
    assert figures["ack_samples"] >= 300  # every frame written in the window is timed, not a sample of them
    assert 0 < figures["ack_p50_ms"] <= figures["ack_p99_ms"] <= figures["ack_max_ms"]
    assert 0 < figures["baseline_ack_p50_ms"] <= figures["baseline_ack_p99_ms"] <= figures["baseline_ack_max_ms"]
    assert figures["cpu_ms_per_1k"] > 0 and figures["baseline_cpu_ms_per_1k"] > 0
    assert figures["cpu_ratio"] == pytest.approx(figures["cpu_ms_per_1k"] / figures["baseline_cpu_ms_per_1k"], rel=0.02)
    assert "server CPU per 1,000 frames" in done.stdout
