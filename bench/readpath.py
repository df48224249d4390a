"""`solewatch bench readpath`: the HTTP API's reads on a big store, quiet and under ingest.

The store (bench/readpath_build.py) holds 10,000 devices with a position
every 30 s for `days` days, and some thousands of alerts. On `solewatch run`
over it, signed in as the tenant's admin, the bench times:

- a device's day of positions, paged by 1,000 as CONTRACT §2 pages it
  (`since`/`until` the day, then `next_cursor` until null), for many
  device-days drawn at random: p50/p99 per page;
- the device list with live state as the dashboard loads it
  (`limit=1000`, every page): p50/p99 per page and per whole list;
- alerts newest first (`limit=50`, the API's default page, following the
  cursor) and the dashboard's open-alerts call: p50/p99 per page;
- the same reads again while load generators send 10,000 POSITIONs/s from
  the store's own devices (one connection per device), with the ingest rate
  the server achieved meanwhile read from its `/metrics`.
"""

from __future__ import annotations

import asyncio
import random
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentile, print_table, run_loadgens, start_solewatch
from bench.readpath_build import (
    DAY_S,
    INTERVAL_S,
    StoreShape,
    build,
    credentials,
    imei_of,
    load_shape,
    say,
    store_bytes,
)

ADMIN = ("bench@solewatch.local", "bench password 1")
PAGE = 1000  # positions per page, the API's largest
DEVICE_PAGE = 1000  # devices per page, as the dashboard asks
ALERT_PAGE = 50  # the API's default
INGEST_PER_DEVICE = 1.0  # frames/s from each device while ingesting: 10,000 frames/s from 10,000 devices
STEADY_WAIT_S = 60.0  # the longest wait for 10,000 devices to log in and send at the offered rate
STEADY_MARGIN_S = 5.0  # how much longer than the reads the devices send: time to see them steady
_FRAMES_STORED = re.compile(rb"^listener_frames_stored_total ([0-9.e+]+)$", re.MULTILINE)

Timings = dict[str, list[float]]  # what was read -> each request's seconds
READS = ("page", "first_page", "device_page", "device_list", "alerts", "alerts_open")


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _get(http: httpx.AsyncClient, timings: list[float], url: str, params: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    response = await http.get(url, params=params)
    timings.append(time.perf_counter() - started)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def read_device_day(http: httpx.AsyncClient, timings: Timings, shape: StoreShape, rng: random.Random) -> int:
    """One device's day of positions, every page; how many positions it held."""
    day = shape.start_ts + rng.randrange(shape.days) * DAY_S
    params: dict[str, Any] = {"since": _iso(day), "until": _iso(day + DAY_S - 1), "limit": PAGE}
    url = f"/api/v1/devices/{imei_of(rng.randrange(shape.devices))}/positions"
    count = 0
    while True:
        page = await _get(http, timings["page"], url, params)
        if count == 0:  # the first page of a read also writes its entry in the audit log (CONTRACT §5)
            timings["first_page"].append(timings["page"][-1])
        count += len(page["items"])
        if page["next_cursor"] is None:
            return count
        params["cursor"] = page["next_cursor"]


async def read_device_list(http: httpx.AsyncClient, timings: Timings) -> int:
    """Every device with its live state, as the dashboard loads them; how many."""
    started = time.perf_counter()
    params: dict[str, Any] = {"limit": DEVICE_PAGE}
    count = 0
    while True:
        page = await _get(http, timings["device_page"], "/api/v1/devices", params)
        count += len(page["items"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    timings["device_list"].append(time.perf_counter() - started)
    return count


async def read_alerts(http: httpx.AsyncClient, timings: Timings, pages: int) -> int:
    """The first `pages` pages of alerts newest first, and the open ones as the dashboard asks; how many."""
    params: dict[str, Any] = {"limit": ALERT_PAGE}
    count = 0
    for _ in range(pages):
        page = await _get(http, timings["alerts"], "/api/v1/alerts", params)
        count += len(page["items"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    await _get(http, timings["alerts_open"], "/api/v1/alerts", {"status": "open", "limit": 500})
    return count


async def read_all(
    http: httpx.AsyncClient, shape: StoreShape, rng: random.Random, *, device_days: int, lists: int, alert_pages: int
) -> tuple[Timings, dict[str, int]]:
    """One round of every read: positions of `device_days` device-days, `lists` device lists, alert pages."""
    timings: Timings = {k: [] for k in READS}
    counts = {"device_days_read": device_days, "positions_read": 0, "devices_listed": 0, "alerts_listed": 0}
    for _ in range(device_days):
        counts["positions_read"] += await read_device_day(http, timings, shape, rng)
    for _ in range(lists):
        counts["devices_listed"] = await read_device_list(http, timings)
    counts["alerts_listed"] = await read_alerts(http, timings, alert_pages)
    return timings, counts


def figures_of(timings: Timings, suffix: str = "") -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name in READS:
        values = sorted(timings[name])
        figures[f"{name}_count{suffix}"] = len(values)
        figures[f"{name}_p50_ms{suffix}"] = round(percentile(values, 0.5) * 1000, 2)
        figures[f"{name}_p99_ms{suffix}"] = round(percentile(values, 0.99) * 1000, 2)
        figures[f"{name}_max_ms{suffix}"] = round(values[-1] * 1000, 2) if values else None
    return figures


async def frames_stored(http: httpx.AsyncClient) -> float:
    """The listener's count of frames made durable, from the server's Prometheus metrics."""
    found = _FRAMES_STORED.search((await http.get("/metrics")).content)
    return float(found.group(1)) if found else 0.0


async def run(
    *,
    devices: int = 10_000,
    days: int = 2,
    alarms: int | None = None,
    store: Path | None = None,
    device_days: int = 40,
    lists: int = 5,
    alert_pages: int = 20,
    seconds: float = 10.0,
    warmup: float = 3.0,
    processes: int = 2,
    ingest_rate: int | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="solewatch-readpath-") as tmp:
        store_dir = store or Path(tmp)
        shape = load_shape(store_dir)
        if shape is None:
            # Some thousands of alerts on the full store, a few dozen on a small one.
            alarms = alarms or max(20, min(5000, devices * days * DAY_S // INTERVAL_S // 10_000))
            shape = await build(store_dir, devices=devices, days=days, alarms=alarms)
        elif (shape.devices, shape.days) != (devices, days):
            say(f"readpath: reusing the store at {store_dir}: {shape.devices:,} devices × {shape.days} days")
        else:
            say(f"readpath: reusing the store at {store_dir}")
        figures = await measure(
            store_dir,
            shape,
            device_days=device_days,
            lists=lists,
            alert_pages=alert_pages,
            seconds=seconds,
            warmup=warmup,
            processes=processes,
            ingest_rate=ingest_rate or round(shape.devices * INGEST_PER_DEVICE),
        )
    return figures


async def measure(
    store_dir: Path,
    shape: StoreShape,
    *,
    device_days: int,
    lists: int,
    alert_pages: int,
    seconds: float,
    warmup: float,
    processes: int,
    ingest_rate: int,
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "devices": shape.devices,
        "days": shape.days,
        "positions_total": shape.positions_total,
        "store_gb": round(store_bytes(store_dir) / 1e9, 2),
        "build_rows_per_s": shape.build_rows_per_s,
        "build_seconds": shape.build_seconds,
    }
    say(f"readpath: {shape.positions_total:,} positions in {figures['store_gb']} GB; starting solewatch run")
    started = time.perf_counter()
    server, port, http_port = await start_solewatch(
        store_dir, admin_email=ADMIN[0], admin_password=ADMIN[1], max_connections=shape.devices + 100
    )
    figures["startup_s"] = round(time.perf_counter() - started, 2)
    rng = random.Random(19)
    try:
        base = f"http://127.0.0.1:{http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            token = (await http.post("/api/v1/auth/token", json={"email": ADMIN[0], "password": ADMIN[1]})).json()
            http.headers["Authorization"] = f"Bearer {token['access_token']}"
            await read_all(http, shape, rng, device_days=2, lists=1, alert_pages=2)  # warm the server's code paths
            timings, counts = await read_all(
                http, shape, rng, device_days=device_days, lists=lists, alert_pages=alert_pages
            )
            figures |= figures_of(timings) | counts
            figures |= await _under_ingest(
                http,
                lambda: read_all(http, shape, rng, device_days=max(1, device_days // 4), lists=1, alert_pages=2),
                port,
                shape,
                seconds=seconds,
                warmup=warmup,
                processes=processes,
                rate=ingest_rate,
            )
    finally:
        await server.stop()
    return figures


async def _under_ingest(
    http: httpx.AsyncClient,
    read_round: Callable[[], Awaitable[tuple[Timings, dict[str, int]]]],
    port: int,
    shape: StoreShape,
    *,
    seconds: float,
    warmup: float,
    processes: int,
    rate: int,
) -> dict[str, Any]:
    """Rounds of reads for `seconds` while every device sends its share of `rate` positions/s."""
    load = asyncio.create_task(
        run_loadgens(
            port,
            credentials(shape.devices),
            processes=processes,
            # Covers the reads, which start once ingest is steady; a short run (the smoke test) waits less.
            seconds=seconds + warmup + min(STEADY_MARGIN_S, 1.0 + seconds),
            warmup=0.5,
            window=8,
            rate=rate,
        )
    )
    # Reads start once the devices are logged in (the load generators' clock starts then) and their
    # frames stored at half the offered rate or more (or after STEADY_WAIT_S: the figures then say
    # what rate the server kept up). One round of reads at least, even if the sending stopped early.
    before, at = await frames_stored(http), time.perf_counter()
    give_up = at + STEADY_WAIT_S
    while not load.done() and time.perf_counter() < give_up:
        await asyncio.sleep(1.0)
        now_stored, now = await frames_stored(http), time.perf_counter()
        if (now_stored - before) / (now - at) >= rate * 0.5:
            break
        before, at = now_stored, now
    await asyncio.sleep(warmup)
    timings: Timings = {}
    stored_at_start, read_start = await frames_stored(http), time.perf_counter()
    rounds = 0
    while rounds == 0 or (time.perf_counter() - read_start < seconds and not load.done()):
        got, _ = await read_round()
        rounds += 1
        for key, values in got.items():
            timings.setdefault(key, []).extend(values)
    read_seconds = time.perf_counter() - read_start
    stopped_early = load.done()  # then the frames/s below are spread over reads that partly ran without ingest
    ingest_fps = (await frames_stored(http) - stored_at_start) / read_seconds
    result = await load
    return figures_of(timings, "_under_ingest") | {
        "ingest_rate_offered": rate,
        "ingest_fps_under_reads": round(ingest_fps),
        "ingest_logged_in": result["logged_in"],
        "ingest_ack_p99_ms": round(result["p99_ms"], 2),
        "read_rounds_under_ingest": rounds,
        "ingest_stopped_before_reads_ended": stopped_early,
    }


def report(figures: dict[str, Any]) -> None:
    def row(name: str, suffix: str = "") -> str:
        count = figures[f"{name}_count{suffix}"]
        return (
            f"p50 {figures[f'{name}_p50_ms{suffix}']} ms, p99 {figures[f'{name}_p99_ms{suffix}']} ms,"
            f" max {figures[f'{name}_max_ms{suffix}']} ms ({count:,} requests)"
        )

    rows = [
        ("store", f"{figures['devices']:,} devices × {figures['days']} days, {figures['positions_total']:,} positions"),
        ("store size", f"{figures['store_gb']} GB (built at {figures['build_rows_per_s']:,} rows/s)"),
        ("solewatch run ready in", f"{figures['startup_s']} s"),
    ]
    for suffix, label in (("", "quiet"), ("_under_ingest", f"{figures['ingest_rate_offered']:,} frames/s offered")):
        rows += [
            (f"[{label}] positions page of {PAGE:,}", row("page", suffix)),
            (f"[{label}]   of which first pages", row("first_page", suffix)),
            (f"[{label}] device page of {DEVICE_PAGE:,}", row("device_page", suffix)),
            (f"[{label}] whole device list", row("device_list", suffix)),
            (f"[{label}] alerts page of {ALERT_PAGE}", row("alerts", suffix)),
            (f"[{label}] open alerts (dashboard)", row("alerts_open", suffix)),
        ]
    rows.append(
        (
            "ingest during reads",
            f"{figures['ingest_fps_under_reads']:,} frames/s stored, ACK p99 "
            f"{figures['ingest_ack_p99_ms']} ms ({figures['ingest_logged_in']:,} devices logged in)",
        )
    )
    print_table("readpath: the HTTP API's reads on a big SQLite store (solewatch run)", rows)
