"""`solewatch bench readpath` keeps working: a tiny store, a short run, figures checked for sense, never for speed."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from bench.readpath_build import build, load_shape

pytestmark = pytest.mark.slow

DEVICES, DAYS, POSITIONS_A_DAY = 50, 1, 2880


async def test_readpath_bench_times_the_apis_reads_on_a_store_built_through_the_write_path(tmp_path):
    out, store = tmp_path / "readpath.json", tmp_path / "store"
    built = await build(store, devices=DEVICES, days=DAYS, alarms=30)
    assert load_shape(store) == built  # kept for the bench to reuse
    argv = [sys.executable, "-m", "services.cli", "bench", "readpath", "--devices", str(DEVICES), "--days", str(DAYS)]
    argv += ["--store", str(store), "--device-days", "3", "--seconds", "1", "--warmup", "0.5", "--json", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)  # nothing else runs on this loop
    assert done.returncode == 0, done.stderr[-2000:]
    figures = orjson.loads(out.read_bytes())

    assert figures["positions_total"] == DEVICES * DAYS * POSITIONS_A_DAY
    assert figures["store_gb"] > 0 and figures["build_rows_per_s"] > 0
    # Every day read was read whole, following the cursor to its end: 1,000 + 1,000 + 880.
    assert figures["positions_read"] == figures["device_days_read"] * POSITIONS_A_DAY
    assert figures["page_count"] == figures["device_days_read"] * 3
    assert figures["devices_listed"] == DEVICES  # with their live state: one page of 1,000
    assert 0 < figures["alerts_listed"] <= 30
    for suffix in ("", "_under_ingest"):
        for read in ("page", "first_page", "device_page", "device_list", "alerts", "alerts_open"):
            assert figures[f"{read}_count{suffix}"] > 0
            p50, p99, top = (figures[f"{read}_{q}_ms{suffix}"] for q in ("p50", "p99", "max"))
            assert 0 < p50 <= p99 <= top
    assert figures["ingest_logged_in"] == DEVICES
    assert figures["ingest_fps_under_reads"] > 0  # the reads ran while frames were being stored
    assert "whole device list" in done.stdout
    assert "reusing the store" in done.stdout and "build:" not in done.stdout  # the store was not built again
