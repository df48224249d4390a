"""`solewatch bench ingest --protocol NAME` keeps working: a tiny run, figures checked for sense, never
for speed (about 8 s a protocol). Two protocols stand for the two ways the bench counts: Teltonika's
answered positions (as GT06's and H02's), the watch's positions counted in the store. Every protocol's
devices and codecs are driven over TCP by tests/integration/test_tracker_protocols.py."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

pytestmark = pytest.mark.slow

CONNECTIONS = 12


@pytest.mark.parametrize("protocol", ["watch", "teltonika"])
def test_tracker_ingest_bench_compares_durable_ingest_with_the_codecs_raw_baseline(tmp_path, protocol):
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "ingest", "--protocol", protocol,
         "--connections", str(CONNECTIONS), "--seconds", "1", "--warmup", "0.5", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = orjson.loads(out.read_bytes())
    assert figures["protocol"] == protocol and figures["connections"] == CONNECTIONS
    # Every device logged in as its protocol does, on both servers, and none was refused or cut off.
    assert figures["logged_in"] == figures["baseline_logged_in"] == CONNECTIONS
    assert figures["refused"] == 0 and figures["lost"] == 0
    assert figures["durable_fps"] > 0 and figures["baseline_fps"] > 0
    assert figures["ratio"] == pytest.approx(figures["durable_fps"] / figures["baseline_fps"], rel=0.01)
    # What was durable is in the store: the answers (or, for the watch, the store itself) and the store
    # agree but for the positions in flight at the window's edges (a window of 8 per device).
    in_flight = CONNECTIONS * 8 * 2
    seconds = figures["seconds"]
    assert (
        abs(figures["stored_positions"] - figures["durable_fps"] * seconds)
        <= in_flight + 0.05 * figures["stored_positions"]
    )
    assert figures["durable_measured_by"] == ("store" if protocol == "watch" else "answers")
    assert f"ingest {protocol}" in done.stdout and "durable frames/s" in done.stdout
