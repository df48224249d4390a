"""`solewatch bench disk` measures something real: every frame of the mix is stored, and the bytes
each one takes are more than its wire size and far less than a page."""

from __future__ import annotations

import pytest

from bench import disk

pytestmark = pytest.mark.slow


async def test_disk_bench_stores_the_whole_mix_and_reports_bytes_per_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOLEWATCH_TEST_MONGODB_URL", raising=False)
    figures = await disk.run(devices=10, hours=0.25, runs=2)

    assert figures["frames_per_device_hour"] == 720 + 120 + 60
    assert figures["mongodb"].startswith("not measured")
    sqlite = figures["sqlite"]
    assert [run["frames"] for run in sqlite["runs"]] == [10 * 225, 10 * 225]
    per_frame = sqlite["bytes_per_frame"]
    assert per_frame["min"] <= per_frame["median"] <= per_frame["max"]
    assert 32 < per_frame["min"] and per_frame["max"] < 400  # a POSITION is 32 bytes on the wire
    first = sqlite["runs"][0]
    assert first["gb_per_device_year_24h"] == pytest.approx(first["bytes_per_frame"] * 900 * 8760 / 1e9, rel=0.01)
