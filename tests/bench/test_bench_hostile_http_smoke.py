"""bench/hostile_http.py keeps working: one tiny run, figures checked for sense, never for speed."""

from __future__ import annotations

import asyncio

import pytest

from bench import hostile_http

pytestmark = pytest.mark.slow


def test_hostile_http_bench_reports_the_answer_memory_and_waits(capsys: pytest.CaptureFixture[str]) -> None:
    figures = asyncio.run(
        hostile_http.run(source=hostile_http.ROOT, runs=1, rss_bytes=5_000_000, stall_bytes=5_000_000)
    )
    (peak,), (stall,) = figures["rss"], figures["stall"]
    assert peak["status"] == stall["status"] == 413  # 5 MB is over the default 1 MiB limit
    assert 0 < peak["rss_before_mb"] <= peak["rss_peak_mb"]
    assert stall["ack_max_ms"] > 0 and stall["healthz_max_ms"] > 0
    hostile_http.report(figures)
    assert "RSS peak after it (MB)" in capsys.readouterr().out
