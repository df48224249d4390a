"""`solewatch bench latency` keeps working: a tiny run, figures checked for sense, never for speed."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest


@pytest.mark.slow
def test_latency_bench_times_frames_to_their_position_events(tmp_path):
    out = tmp_path / "latency.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "bench",
            "latency",
            "--connections",
            "20",
            "--seconds",
            "1",
            "--warmup",
            "0.5",
            "--runs",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = orjson.loads(out.read_bytes())
    for rate in ("1k", "10k"):
        assert figures[f"rate_{rate}_samples"] > 0
        assert figures[f"rate_{rate}_missing"] == 0  # every sampled frame reached the dashboard
        assert 0 < figures[f"rate_{rate}_p50_ms"] <= figures[f"rate_{rate}_p99_ms"] <= figures[f"rate_{rate}_max_ms"]
    assert "send → position event" in done.stdout


async def test_repeated_runs_report_each_figures_median_and_spread(monkeypatch):
    from bench import latency

    p99s = iter([30.0, 10.0, 20.0])

    async def one_run(**options):
        return {"mode": "embedded", "connections": 20, "rates": [1000], "rate_1k_p99_ms": next(p99s)}

    monkeypatch.setattr(latency, "run", one_run)
    figures = await latency.run_repeated(runs=3, connections=20)
    assert (figures["rate_1k_p99_ms_min"], figures["rate_1k_p99_ms"], figures["rate_1k_p99_ms_max"]) == (10, 20, 30)
    assert [figures[f"rate_1k_p99_ms_run{n}"] for n in (1, 2, 3)] == [30, 10, 20]
    assert figures["runs"] == 3
