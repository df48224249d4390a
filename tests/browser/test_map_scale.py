"""The dashboard of a tenant of 10,000 workers (issue 19): it loads, draws every worker, and stays
usable while thousands of positions a second arrive.

The devices are written straight into the store before the server starts (registering 10,000
through the API would take minutes); the load generator of the benches then logs each one in
over TCP, as insoles would, and sends LIVE_RATE positions a second among them for the whole
test. The page opens mid-shift, once every worker is online with a position.

At 4,000 positions/s offered (on a shared 2-core machine, with the server, the load generators
and Chromium on it) the page's Socket.IO connection dropped and reloaded over and over in the
runs that tried it: hence 2,000 here (see the notes of issue 19).

Printed (run with -s) and written to the test's tmp dir as map_scale.json, never asserted: the
load time, the frame intervals and long tasks while the updates arrive, and how long a click on
a worker, a zoom and a click on a dot take to show. What is asserted is what a supervisor sees:
every worker listed and drawn, positions followed live, the page answering, and a worker's SOS
putting them first in the list with a red dot.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bench.common import percentile, register_devices, run_loadgens
from tests.browser.conftest import ADMIN, Browser, Server, sign_in
from tests.browser.test_dashboard import register_insole
from tests.helpers.process import SolewatchProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

WORKERS = 10_000
LIVE_RATE = 2_000  # positions/s offered while the page is watched
# From the first position, at most: the positions stop as soon as the test has checked the page (its
# loading, the clicks and the SOS take ~15 s here); the bound is for a slow machine, within the timeout.
LIVE_SECONDS = 80.0

# Resolves, at the first frame where every worker is drawn and listed, with the time since the
# navigation started (the canvas paints at the frame after the markers are added: one more).
ALL_DRAWN = """async (count) => {
    const frame = () => new Promise((done) => requestAnimationFrame(done));
    const map = document.querySelector('[data-testid="map"]');
    const list = document.querySelector('[data-testid="worker-list"]');
    while (!(map && map.dataset.markers === String(count) && list.children.length === count)) await frame();
    await frame();
    await frame();
    return performance.now();
}"""

SOS_IMEI = "356307042599992"
SOS_AT = (436165000, 70551000)  # 1e-7 degrees: beside the others
ALERT_RED = [211, 47, 47]  # the alert colour of app.css (--alert), as the canvas paints it

# The colour [r, g, b] the map's canvas shows at the centre of a worker's dot.
DOT_COLOUR = """(imei) => {
    const view = window.solewatchDashboard.views.map;
    const at = view.map.latLngToContainerPoint(view.markers.get(imei).getLatLng());
    const canvas = view.canvas._container;
    const box = canvas.getBoundingClientRect(), map = view.element.getBoundingClientRect();
    const scale = canvas.width / box.width;
    const x = Math.round((map.left + at.x - box.left) * scale), y = Math.round((map.top + at.y - box.top) * scale);
    return [...canvas.getContext("2d").getImageData(x, y, 1, 1).data.slice(0, 3)];
}"""

# From now on: every frame's interval, the main thread's long tasks (> 50 ms), the positions received.
WATCH_FRAMES = """() => {
    const seen = { frames: [], longTasks: [], positions: 0, started: performance.now() };
    window.__seen = seen;
    new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) seen.longTasks.push(entry.duration);
    }).observe({ type: "longtask" });
    let last = performance.now();
    const tick = (now) => {
        seen.frames.push(now - last);
        last = now;
        if (!seen.stop) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    const store = window.solewatchDashboard.store; // counts the positions received, before coalescing
    const queue = store.queuePosition.bind(store);
    store.queuePosition = (p) => { seen.positions += 1; queue(p); };
}"""

STOP_WATCHING = """() => {
    const seen = window.__seen;
    seen.stop = true;
    seen.seconds = (performance.now() - seen.started) / 1000;
    return seen;
}"""

# ms from a click (by the page's own element.click(), so the clock starts in the page) to the
# first frame that shows its effect: the details of worker `imei` ("details"), a new scale ("scale").
RESPONSE = """async ([selector, effect, imei]) => {
    const frame = () => new Promise((done) => requestAnimationFrame(done));
    const scale = document.querySelector(".leaflet-control-scale-line");
    const before = scale.textContent;
    const shown = {
        details: () => document.querySelector(`[data-testid="worker-details"][data-imei="${imei}"]`),
        scale: () => scale.textContent !== before,
    }[effect];
    const started = performance.now();
    document.querySelector(selector).click();
    while (!shown()) await frame();
    return performance.now() - started;
}"""


@pytest.fixture
def big_tenant(tmp_path: Path) -> Iterator[tuple[Server, list[tuple[str, str]]]]:
    """A `solewatch run` whose default tenant has 10,000 insoles (none connected yet); their credentials."""
    data = tmp_path / "data"
    data.mkdir()
    credentials = asyncio.run(register_devices(data, WORKERS))
    env = {
        "SOLEWATCH_ADMIN_EMAIL": ADMIN[0],
        "SOLEWATCH_ADMIN_PASSWORD": ADMIN[1],
        "SOLEWATCH_MAP_TILE_URL": f"http://127.0.0.1:{free_port()}/tiles/{{z}}/{{x}}/{{y}}.png",
        "SOLEWATCH_LOG_LEVEL": "warning",
    }
    process = SolewatchProcess(data, "run", log_path=tmp_path / "solewatch.log", env=env).start()
    try:
        yield Server(process, simulated=[]), credentials
    finally:
        process.stop_quietly()


async def every_worker_placed(server: Server) -> None:
    """Once every worker is online with a position (the dashboard then opens mid-shift, not amid
    10,000 insoles logging in)."""
    deadline = time.monotonic() + 30
    async with server.user(*server.admin) as api:
        while True:
            placed, cursor = 0, None
            while True:
                query = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
                page = (await api.get("/api/v1/devices", params=query)).json()
                placed += sum(d["online"] and d["last_position"] is not None for d in page["items"])
                cursor = page["next_cursor"]
                if not cursor:
                    break
            if placed == WORKERS:
                return
            assert time.monotonic() < deadline, f"only {placed} workers online with a position after 30 s"
            await asyncio.sleep(0.5)


async def open_quietly(browser: Browser, server: Server) -> tuple[Any, list[str]]:
    """The dashboard in a fresh page, as Browser.open gives it but without recording what the page
    receives: thousands of WebSocket frames a second, each an event for this process, would hold up
    every other call to the browser. Requests off this machine are aborted and listed."""
    context = await browser.browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    off_machine: list[str] = []

    async def local_only(route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            off_machine.append(url)
            await route.abort()

    await context.route("**/*", local_only)
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    browser.pages.append((page, console))  # its screenshot and console if the test fails
    await page.goto(server.url + "/")
    return page, off_machine


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": percentile(ordered, 0.5), "p99": percentile(ordered, 0.99), "max": ordered[-1] if ordered else 0.0}


async def test_ten_thousand_workers_load_and_stay_live(
    browser: Browser, big_tenant: tuple[Server, list[tuple[str, str]]], tmp_path: Path
) -> None:
    from playwright.async_api import expect

    server, credentials = big_tenant
    figures: dict[str, Any] = {"workers": WORKERS}

    # The shift is on: every insole logs in, then they send LIVE_RATE positions/s in all, each one
    # a position every WORKERS / LIVE_RATE seconds, for the whole test.
    done_watching = asyncio.Event()
    live = asyncio.create_task(
        run_loadgens(
            server.listener_port,
            credentials,
            processes=2,
            window=1,
            rate=LIVE_RATE,
            warmup=0,
            seconds=LIVE_SECONDS,
            stop=done_watching,
        )
    )
    try:
        await every_worker_placed(server)

        page, off_machine = await open_quietly(browser, server)
        started = time.perf_counter()
        await sign_in(page, *server.admin)
        await asyncio.wait_for(page.evaluate(ALL_DRAWN, WORKERS), 30)
        figures["sign_in_to_drawn_ms"] = (time.perf_counter() - started) * 1000
        await expect(page.get_by_test_id("map")).to_have_attribute("data-renderer", "canvas")
        await expect(page.get_by_test_id("worker-summary")).to_contain_text(f"{WORKERS} workers")

        await page.evaluate(WATCH_FRAMES)
        # A click on a dot opens that worker's details (the canvas's hit test).
        map_box = await page.get_by_test_id("map").bounding_box()
        assert map_box is not None
        await expect(page.get_by_test_id("map")).to_have_attribute("data-idle", "true")
        dot = await page.evaluate(
            """(imei) => { const m = window.solewatchDashboard.views.map;
                const p = m.map.latLngToContainerPoint(m.markers.get(imei).getLatLng()); return [p.x, p.y]; }""",
            credentials[0][0],
        )
        await page.mouse.click(map_box["x"] + dot[0], map_box["y"] + dot[1])
        await expect(page.get_by_test_id("details-name")).to_contain_text("bench ")

        # A worker chosen in the list: its details open, and follow its positions as they come.
        followed = credentials[1][0]
        row = f'[data-testid="worker-row-{followed}"]'
        figures["row_click_to_details_ms"] = await page.evaluate(RESPONSE, [row, "details", followed])
        fix = page.get_by_test_id("details-fix-time")
        await expect(fix).not_to_have_text(await fix.text_content() or "", timeout=15_000)
        figures["zoom_click_to_scale_ms"] = await page.evaluate(RESPONSE, [".leaflet-control-zoom-out", "scale", ""])
        seen = await page.evaluate(STOP_WATCHING)

        # A worker registered meanwhile presses SOS: listed first, in alert, a red dot on the canvas.
        insole = await register_insole(server, SOS_IMEI, "Lone diver")
        try:
            await insole.send(insole.position(lat_e7=SOS_AT[0], lon_e7=SOS_AT[1], battery=80))
            await insole.send(insole.alarm(kind=1, lat_e7=SOS_AT[0], lon_e7=SOS_AT[1]))
            first_row = page.get_by_test_id("worker-list").locator("li").first.locator("button")
            await expect(first_row).to_have_attribute("data-testid", f"worker-row-{SOS_IMEI}", timeout=15_000)
            await expect(first_row).to_have_attribute("data-state", "alert")
            await expect(page.get_by_test_id("worker-summary")).to_contain_text(f"{WORKERS + 1} workers · 1 in alert")
            assert await page.evaluate(DOT_COLOUR, SOS_IMEI) == ALERT_RED
        finally:
            await insole.close()
        await expect(page.get_by_test_id("map")).to_have_attribute("data-markers", str(WORKERS + 1))
        screenshot = tmp_path / "map_10000_workers.png"
        await page.screenshot(path=str(screenshot))  # while the positions still come
    finally:
        done_watching.set()
        result = await live  # its load generators have stopped: never leave them behind
    assert seen["positions"] > 0, "no position reached the page while it was watched"
    assert not off_machine, off_machine

    figures.update(
        {
            "live_offered_fps": LIVE_RATE,
            "live_acked_fps": round(result["fps"]),
            "watched_s": round(seen["seconds"], 1),
            "positions_received_per_s": round(seen["positions"] / seen["seconds"]),
            "frames": len(seen["frames"]),
            **{f"frame_interval_{k}_ms": round(v, 1) for k, v in spread(seen["frames"]).items()},
            "long_tasks": len(seen["longTasks"]),
            "long_task_total_ms": round(sum(seen["longTasks"])),
            "long_task_max_ms": round(max(seen["longTasks"], default=0.0)),
        }
    )
    figures = {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}
    (tmp_path / "map_scale.json").write_text(json.dumps(figures, indent=2))
    print(f"\nmap at {WORKERS} workers (screenshot {screenshot}):")
    for key, value in figures.items():
        print(f"  {key:28} {value}")
