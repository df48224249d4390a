"""`solewatch bench reports` keeps working: a tiny store, one run per case, figures checked for sense, never
for speed."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.slow

DEVICES, DAYS = 4, 2


def test_reports_bench_builds_a_store_and_times_each_case_in_a_fresh_process(tmp_path):
    out = tmp_path / "reports.json"
    argv = [sys.executable, "-m", "services.cli", "bench", "reports", "--devices", str(DEVICES), "--days", str(DAYS)]
    argv += ["--runs", "1", "--store", str(tmp_path / "store"), "--json", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = orjson.loads(out.read_bytes())
    assert figures["frames_stored"] == DEVICES * 3 * (120 + 120 + 60)  # three hours: 30 s, 30 s, 60 s apart
    assert figures["hours_summed"] >= DEVICES * 3
    assert figures["hours_written"] == DEVICES * (DAYS * 24 - 3)
    for case in ("month", "month_csv", "month_edges", "day", "month_per_day"):
        assert figures[f"{case}_items"] == DEVICES
        [seconds], [peak] = figures[f"{case}_seconds"], figures[f"{case}_peak_mib"]
        assert seconds > 0 and peak >= figures[f"{case}_rss_before_mib"][0] > 0
    assert figures["month_over_day"] > 0
    assert "month: seconds min/median/max" in done.stdout
