"""`solewatch bench dashboards` keeps working: a tiny run, figures checked for sense, never for speed."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.slow


def test_dashboards_bench_times_positions_to_every_dashboard_with_and_without_a_stalled_one(tmp_path):
    out = tmp_path / "dashboards.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "bench",
            "dashboards",
            "--clients",
            "5",
            "--connections",
            "20",
            "--rate",
            "1000",
            "--seconds",
            "1",
            "--warmup",
            "0.5",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = orjson.loads(out.read_bytes())
    assert figures["clients"] == 5
    for phase in ("steady", "stalled"):
        assert figures[f"{phase}_samples"] > 0
        assert 0 < figures[f"{phase}_slowest_p50_ms"] <= figures[f"{phase}_slowest_p99_ms"]
        assert figures[f"{phase}_slowest_p99_ms"] <= figures[f"{phase}_slowest_max_ms"]
        assert figures[f"{phase}_all_p99_ms"] <= figures[f"{phase}_slowest_p99_ms"]  # it is the slowest one's
        assert 0 < figures[f"{phase}_events_per_s_min"] <= figures[f"{phase}_events_per_s_median"]
        assert figures[f"{phase}_events_per_s_total"] >= 5 * (figures[f"{phase}_events_per_s_min"] - 1)  # rounded
        assert figures[f"{phase}_server_cpu_cores"] > 0 and figures[f"{phase}_rss_max_mb"] > 0
    assert figures["stalled_p99_ratio"] == pytest.approx(
        figures["stalled_slowest_p99_ms"] / figures["steady_slowest_p99_ms"], rel=0.01
    )
    assert "stalled vs steady" in done.stdout
