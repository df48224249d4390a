"""`solewatch bench reports`: a month's workers report (GET /api/v1/reports/workers) for a
thousand devices on the embedded store, its time and the process's peak memory (issue 20's
target: under 2 s and 200 MB).

The store: `--devices` devices of one tenant over `--days` days ending on a UTC midnight.

- The last three hours of the month hold real frames for every device (a position and an
  activity every 30 s, a heartbeat every 60 s: walking, standing, lying by turns), committed as
  the listener commits them and summed into hour totals by the summing worker's own code
  (`catch_up`): its rate is a figure too.
- The month's other hours get hour totals written through the store's own `save_report_hours`,
  copied from those summed hours. A month of frames for a thousand devices would be 216 M
  frames (hours to build); a whole-hour report never reads frames, only these rows (one per
  device and hour, 720 k), so that is what the figure measures.
- Three alerts per device, two of them acknowledged.

Each measurement runs in a fresh process (`python -m bench.reports measure`): it opens the
store, builds the API app, signs in, warms it up with a one-hour report of one device, and asks once,
through HTTP in-process (httpx's ASGI
transport: routing, validation, JSON included). Its figures are the answer's time and the
process's peak resident memory (`ru_maxrss`: the interpreter, the app, SQLite's cache and the
report together), three runs per case. Cases: the month (whole hours), the month as CSV, the
month with half hours at both edges (figures from frames for every device at the edge with
frames), one day, whose time the month's is given as a ratio of, and the month per day
(GET /api/v1/reports/activity, what the dashboard's chart reads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import print_table
from shared.protocols.xsole import Activity, Heartbeat, Position
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store import FrameRecord, hash_device_token
from shared.store.batch import IngestBatch
from shared.store.reports import HOUR_S, DueHour
from shared.store.sqlite import SqliteStore

END = 1_793_491_200  # 2026-11-01T00:00:00Z
DAY = 86_400
REAL_HOURS = 3
COMMIT = 5000  # frames per commit while building
RUNS = 3
ADMIN = "bench-admin@example.com"


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def cases(days: int) -> dict[str, dict[str, str]]:
    start = END - days * DAY
    return {
        "month": {"since": _iso(start), "until": _iso(END)},
        "month_csv": {"since": _iso(start), "until": _iso(END), "format": "csv"},
        "month_edges": {"since": _iso(start + 1800), "until": _iso(END - 1800)},
        "day": {"since": _iso(END - DAY), "until": _iso(END)},
        # What the dashboard's chart reads: the month per day (GET /api/v1/reports/activity).
        "month_per_day": {"since": _iso(start), "until": _iso(END), "tz": "UTC", "path": "/api/v1/reports/activity"},
    }


def _frames(rng: random.Random, device_index: int) -> list[Any]:
    """The device's last REAL_HOURS hours: by turns walking (40 steps a report), standing, lying."""
    events: list[Any] = []
    lat, lon = 481_371_540 + device_index * 10_000, 115_761_240
    for i, ts in enumerate(range(END - REAL_HOURS * HOUR_S, END, 30)):
        state = (2, 1, 2, 4)[(ts // 900 + device_index) % 4]
        if state == 2:
            lat += 3800  # ~42 m north
        jitter = rng.randint(-30, 30)
        speed = 140 if state == 2 else rng.randint(0, 20)
        events.append(Position(2 * i, ts, lat + jitter, lon + jitter, 500, speed, 0, 9, 9, 80, FLAG_FIX_VALID))
        events.append(Activity(2 * i + 1, ts, 40 if state == 2 else 0, state, 80, 80, 0))
        if i % 2 == 0:
            events.append(Heartbeat(1_000_000 + i, ts, 80, -70))
    return events


async def _no_rest(_: float) -> None:
    """The worker rests between batches to take a quarter of the process; here it runs flat out."""


async def build(path: Path, *, devices: int, days: int) -> dict[str, Any]:
    """Fill a fresh store at `path`; what it took."""
    from services.notifications.report_hours import catch_up

    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    figures: dict[str, Any] = {}
    try:
        tenant = await store.ensure_tenant("bench")
        await store.create_user(tenant_id=tenant, email=ADMIN, password_hash="unused", role="admin")
        rng = random.Random(20)
        made = [
            await store.add_device(
                tenant_id=tenant, imei=f"35630704{n:07d}", name=f"worker {n}", token_hash=hash_device_token(b"x")
            )
            for n in range(devices)
        ]
        started, frames, pending = time.perf_counter(), 0, []
        for n, device in enumerate(made):
            pending += [FrameRecord(device.id, tenant, device.imei, e, time.time()) for e in _frames(rng, n)]
            if len(pending) >= COMMIT or n == len(made) - 1:
                await store.commit_telemetry(IngestBatch.from_events(pending))
                frames += len(pending)
                pending = []
            if n % 100 == 99:
                print(f"  frames for {n + 1:,} devices stored ({frames:,})", flush=True)
        figures["frames_stored"] = frames
        figures["frames_per_s"] = round(frames / (time.perf_counter() - started))
        started = time.perf_counter()
        summed = await catch_up(store, gap_s=600, now=END + 2 * HOUR_S, rest=_no_rest)
        figures["hours_summed"] = summed
        figures["hours_summed_per_s"] = round(summed / (time.perf_counter() - started))
        print(f"  {summed:,} device hours summed from their frames", flush=True)

        real = await store.report_hour_totals(
            [(d.id, END - k * HOUR_S) for d in made for k in range(1, REAL_HOURS + 1)]
        )
        templates = list(real.values())
        rows: list[tuple[DueHour, Any]] = []
        written = 0
        for device in made:
            for hour in range(END - days * DAY, END - REAL_HOURS * HOUR_S, HOUR_S):
                rows.append((DueHour(device.id, hour), rng.choice(templates)))
            if len(rows) >= 20_000:
                await store.save_report_hours(rows)
                written += len(rows)
                rows = []
        await store.save_report_hours(rows)
        written += len(rows)
        figures["hours_written"] = written
        print(f"  {written:,} more device hours written from them", flush=True)

        for n, device in enumerate(made):
            for k in range(3):
                alarm = {
                    "alarm_id": n * 3 + k + 1,
                    "tenant_id": tenant,
                    "device_id": device.id,
                    "imei": device.imei,
                    "kind": ("sos", "fall", "no_motion")[k],
                    "ts": END - days * DAY + rng.randrange(days * DAY),
                    "lat": 48.1,
                    "lon": 11.5,
                    "battery": 80,
                }
                alert, _ = await store.raise_alert_from_alarm(alarm)
                if k < 2:
                    await store.acknowledge_alert(tenant, alert.id, by=ADMIN)
        figures["alerts"] = devices * 3
    finally:
        await store.close()
    return figures


async def measure(path: Path, params: dict[str, str], devices: int) -> dict[str, Any]:
    """One report, in this (fresh) process: seconds, bytes, and the peak resident memory."""
    params = dict(params)
    route = params.pop("path", "/api/v1/reports/workers")
    import httpx

    from services.api import create_app
    from services.authn.tokens import start_session
    from services.context import ServiceContext
    from shared.bus.memory import MemoryBus
    from shared.cache.memory import MemoryCache
    from shared.config import Settings
    from shared.runtime import Runtime

    settings = Settings.model_validate({"data_dir": path.parent, "jwt_secret": "b" * 32})
    assert settings.sqlite_path == path, "the store is a data directory's solewatch.db"
    store = SqliteStore(path, synchronous="NORMAL")
    await store.open()
    try:
        cache = MemoryCache()
        user = await store.user_by_email(ADMIN)
        assert user is not None
        token = (await start_session(settings, cache, user)).access_token
        context = ServiceContext(settings=settings, store=store, cache=cache, bus=MemoryBus(), commands=None)  # type: ignore[arg-type]  # a report sends no command
        app = create_app(context, Runtime([], lambda: settings)).other_asgi_app
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
            # A first request of another hour warms the app's code paths (imports, validators): not the report's.
            warm = {"since": _iso(END - DAY - HOUR_S), "until": _iso(END - DAY), "limit": "1"}
            await http.get("/api/v1/reports/workers", params=warm, headers={"Authorization": f"Bearer {token}"})
            started = time.perf_counter()
            answer = await http.get(
                route,
                params={**params, "limit": str(min(devices, 1000))},
                headers={"Authorization": f"Bearer {token}"},
                timeout=600,
            )
            seconds = time.perf_counter() - started
        assert answer.status_code == 200, answer.text
        items = answer.text.count("\n") - 1 if params.get("format") == "csv" else len(answer.json()["items"])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "seconds": seconds,
            "bytes": len(answer.content),
            "items": items,
            "rss_before_kb": before,
            "peak_kb": peak,
        }
    finally:
        await store.close()


def _measure_in_a_fresh_process(path: Path, case: str, params: dict[str, str], devices: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.reports", "measure", str(path), json.dumps(params), str(devices)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


async def run(*, devices: int = 1000, days: int = 30, store: Path | None = None, runs: int = RUNS) -> dict[str, Any]:
    """`store`: a data directory to keep the built store in, or whose store to measure again."""
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as tmp:
        path = (store if store is not None else Path(tmp)) / "solewatch.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        figures: dict[str, Any] = {"devices": devices, "days": days}
        if not path.exists():
            print(f"building the store: {devices:,} devices, {days} days…", flush=True)
            figures |= await build(path, devices=devices, days=days)
        figures["store_mb"] = round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6, 1)
        for case, params in cases(days).items():
            measured = [_measure_in_a_fresh_process(path, case, params, devices) for _ in range(runs)]
            figures[f"{case}_items"] = measured[0]["items"]
            figures[f"{case}_seconds"] = [round(r["seconds"], 3) for r in measured]
            figures[f"{case}_peak_mib"] = [round(r["peak_kb"] / 1024, 1) for r in measured]
            figures[f"{case}_rss_before_mib"] = [round(r["rss_before_kb"] / 1024, 1) for r in measured]
            print(f"  {case}: {figures[f'{case}_seconds']} s", flush=True)
        figures["month_over_day"] = round(
            statistics.median(figures["month_seconds"]) / statistics.median(figures["day_seconds"]), 2
        )
        return figures


def report(figures: dict[str, Any]) -> None:
    rows = [
        ("devices, days", f"{figures['devices']:,}, {figures['days']}"),
        ("store", f"{figures['store_mb']} MB"),
    ]
    if "frames_stored" in figures:
        rows += [
            ("frames stored (last 3 h of the month)", f"{figures['frames_stored']:,} at {figures['frames_per_s']:,}/s"),
            (
                "device hours summed from frames (flat out)",
                f"{figures['hours_summed']:,} at {figures['hours_summed_per_s']:,}/s",
            ),
            ("device hours written from those", f"{figures['hours_written']:,}"),
        ]
    for case in cases(figures["days"]):
        seconds, peaks = figures[f"{case}_seconds"], figures[f"{case}_peak_mib"]
        rows.append((f"{case}: seconds min/median/max", " / ".join(f"{s:.3f}" for s in _spread(seconds))))
        rows.append((f"{case}: peak RSS MiB min/median/max", " / ".join(f"{p:.1f}" for p in _spread(peaks))))
    rows.append(("month over day (median seconds)", f"{figures['month_over_day']}x"))
    print_table("workers report", rows)


def _spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def _main() -> None:
    parser = argparse.ArgumentParser(description="one measurement of `solewatch bench reports`, in a fresh process")
    parser.add_argument("command", choices=["measure"])
    parser.add_argument("store", type=Path)
    parser.add_argument("params")
    parser.add_argument("devices", type=int)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.store, json.loads(args.params), args.devices))))


if __name__ == "__main__":
    _main()
