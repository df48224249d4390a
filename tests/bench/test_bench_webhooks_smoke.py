"""`solewatch bench webhooks` keeps working: a tiny run, figures checked for sense, never for speed."""

from __future__ import annotations

import re
import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.slow


def test_webhooks_bench_delivers_every_event_once_and_times_both_phases(tmp_path):
    out = tmp_path / "webhooks.json"
    # One phase of each kind (the streaming outlasts the phases by 2 s a phase, and is waited out).
    tiny = ["--connections", "20", "--seconds", "2", "--slow-endpoints", "1", "--events", "30", "--phases", "AB"]
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "webhooks", *tiny, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = orjson.loads(out.read_bytes())
    # Throughput: each alarm's alert.raised arrived, signed, exactly once, naming its own alert.
    assert figures["webhook_events"] == 30 and figures["webhook_alarms_refused"] == 0
    assert figures["webhook_delivered_unique"] == figures["webhook_delivered_alerts"] == 30
    assert figures["webhook_duplicates"] == 0 and figures["webhook_all_delivered_once"] is True
    assert figures["bad_signatures"] == 0
    assert figures["webhook_events_per_s"] > 0 and figures["webhook_seconds_to_last_event"] > 0
    # Both phases timed alarms, and phase B's endpoint was really sent to.
    assert figures["alarms_a"] > 0 and figures["alarms_b"] > 0
    assert figures["slow_endpoint_requests"] > 0
    assert figures["server_cpu_pct_a"] > 0 and figures["server_cpu_pct_b"] > 0
    for phase in ("a", "b"):
        p50, p99 = figures[f"alarm_to_sms_p50_ms_{phase}"], figures[f"alarm_to_sms_p99_ms_{phase}"]
        assert 0 < p50 <= p99 <= figures[f"alarm_to_sms_max_ms_{phase}"]
    assert figures["ratio_p99"] == pytest.approx(
        figures["alarm_to_sms_p99_ms_b"] / figures["alarm_to_sms_p99_ms_a"], abs=0.001
    )
    assert "ratio B / A, p99" in done.stdout
    assert re.search(r"^every event delivered exactly once +yes$", done.stdout, re.MULTILINE)
