"""The benchmarks keep working: a tiny run of each, figures checked for sense, never for speed."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.slow


def run_bench(tmp_path, *args: str) -> dict:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return orjson.loads(out.read_bytes()) | {"stdout": done.stdout}


def test_ingest_bench_compares_durable_ingest_with_the_raw_baseline(tmp_path):
    figures = run_bench(tmp_path, "ingest", "--connections", "20", "--seconds", "1", "--warmup", "0.5")
    for key in ("durable_fps", "baseline_fps", "ratio", "ack_p50_ms", "ack_p99_ms", "rss_mb", "connections", "mode"):
        assert key in figures
    assert figures["connections"] == 20 and figures["logged_in"] == 20 and figures["mode"] == "embedded"
    assert figures["durable_fps"] > 0 and figures["baseline_fps"] > 0
    assert figures["refused"] == 0
    assert figures["ratio"] == pytest.approx(figures["durable_fps"] / figures["baseline_fps"], rel=0.01)
    assert "durable frames/s" in figures["stdout"]


def test_connections_bench_holds_every_connection(tmp_path):
    figures = run_bench(tmp_path, "connections", "--connections", "300")
    assert figures["held"] == 300
    assert figures["rss_per_connection_kb"] > 0
    assert "RSS per connection" in figures["stdout"]


def test_distributed_ingest_bench_runs_listeners_on_a_broker(tmp_path, amqp_server):
    # amqp_server: only so the test skips where RabbitMQ is not installed; the bench starts its own.
    figures = run_bench(
        tmp_path, "ingest", "--mode", "distributed", "--connections", "20", "--seconds", "1", "--warmup", "0.5"
    )
    assert figures["mode"] == "distributed" and figures["listener_processes"] == 2
    assert figures["logged_in"] == 20 and figures["refused"] == 0 and figures["durable_fps"] > 0
    assert figures["stored_frames"] > 0  # the storage writers stored what the listeners acknowledged
    assert "stored by the writers" in figures["stdout"]


def test_alarm_bench_times_alarms_to_their_sms(tmp_path):
    figures = run_bench(tmp_path, "alarm", "--connections", "20", "--seconds", "1", "--warmup", "0.5")
    assert figures["alarms"] > 0
    assert 0 < figures["alarm_to_sms_p50_ms"] <= figures["alarm_to_sms_p99_ms"] <= figures["alarm_to_sms_max_ms"]
    # The reply path: every SMS answered with its code brought COMMAND 4 to the insole.
    assert figures["acknowledged"] == figures["alarms"]
    assert 0 < figures["alarm_to_command_p50_ms"] <= figures["alarm_to_command_p99_ms"]
    assert "ALARM frame to SMS request" in figures["stdout"]


def test_purge_bench_measures_ingest_with_and_without_the_purge(tmp_path):
    figures = run_bench(tmp_path, "purge", "--connections", "20", "--seconds", "1", "--warmup", "0.5")
    assert figures["connections"] == 20 and figures["history_days"] == 30
    assert figures["history_runs"] == 20 * 30 * 86400 // 300 // 4
    assert figures["fps_without_purge"] > 0 and figures["fps_with_purge"] > 0
    assert len(figures["pair_ratios"]) == 2
    # The purge ran during the windows: it deleted some of the expired runs.
    assert 0 <= figures["expired_runs_left_at_end"] < figures["expired_runs"]
    assert "frames/s with purge" in figures["stdout"]
