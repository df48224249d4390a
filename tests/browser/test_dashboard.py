"""A supervisor's day on the dashboard, in headless Chromium, on a desk screen and on a phone.

The page talks to a real `solewatch run --simulate` process; a test insole
(XSoleTestClient) is a worker whose SOS the supervisor receives and
acknowledges, and the insole must then get COMMAND alarm-acknowledged.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from typing import Any

import pytest

from shared.protocols.xsole import Command, CommandCode
from tests.browser.conftest import Browser, Server, sign_in
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

# One test insole per form factor: the server is shared by the whole session.
WORKERS = {"desktop": ("356307042441013", "Test worker Alice"), "phone": ("356307042441021", "Test worker Bruno")}
START = {"desktop": (436100000, 70500000), "phone": (436120000, 70520000)}  # 1e-7 degrees


async def _expect() -> Any:
    from playwright.async_api import expect

    return expect


async def register_insole(
    server: Server, imei: str, name: str, admin_login: tuple[str, str] | None = None
) -> XSoleTestClient:
    """A device registered by that admin (the platform's by default), its insole connected and logged in."""
    async with server.user(*(admin_login or server.admin)) as admin:
        created = await admin.post("/api/v1/devices", json={"imei": imei, "name": name})
        assert created.status_code == 201, created.text
        token = bytes.fromhex(created.json()["token"])
    insole = await XSoleTestClient.connect("127.0.0.1", server.listener_port)
    assert (await insole.login(imei, token)).status == 0
    return insole


async def walk(insole: XSoleTestClient, lat_e7: int, lon_e7: int, steps: int) -> list[tuple[float, float]]:
    """`steps` positions going north-east, one second apart, all stored; their coordinates in degrees."""
    now = int(time.time()) - steps
    frames = [
        insole.position(ts=now + i, lat_e7=lat_e7 + i * 150, lon_e7=lon_e7 + i * 150, battery=80) for i in range(steps)
    ]
    await insole.send(*frames)
    assert set((await insole.recv_acks(steps)).values()) == {0}
    return [(f.lat_e7 / 1e7, f.lon_e7 / 1e7) for f in frames]


async def command_received(insole: XSoleTestClient) -> Command:
    """The next COMMAND the server sends the insole (ACKs in between are skipped)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        frame = await insole.recv(timeout=15)
        if isinstance(frame, Command):
            return frame
    raise AssertionError("no COMMAND reached the insole")


async def show_view(page: Any, form: str, view: str) -> None:
    """Phones show one view at a time behind a tab; desktops show the map beside the panels."""
    if form == "phone" or view != "map":
        await page.get_by_test_id(f"nav-{view}").click()


@pytest.mark.parametrize("form", ["desktop", "phone"])
async def test_a_supervisor_receives_and_handles_an_sos(form: str, browser: Browser, server: Server) -> None:
    expect = await _expect()
    imei, name = WORKERS[form]
    insole = await register_insole(server, imei, name)
    track = await walk(insole, *START[form], steps=3)
    page, traffic = await browser.open(server, form)

    # --- signing in: the live map of the tenant's workers
    await expect(page.get_by_test_id("login-screen")).to_be_visible()
    await sign_in(page, *server.admin)
    await expect(page.get_by_test_id("tenant-name")).to_have_text("default")
    for simulated in server.simulated:
        await expect(page.get_by_test_id(f"marker-{simulated}")).to_be_visible()
    marker = page.get_by_test_id(f"marker-{imei}")
    await expect(marker).to_have_attribute("data-lat", str(track[-1][0]))
    await expect(marker).to_have_attribute("data-state", "ok")

    # markers move as positions arrive: the simulator's walkers, and the test worker's next step
    before = await page.evaluate(
        """imeis => imeis.map(i => {
        const m = document.querySelector(`[data-testid="marker-${i}"]`);
        return m.dataset.lat + "," + m.dataset.lon; })""",
        server.simulated,
    )
    await page.wait_for_function(
        """([imeis, before]) => imeis.some((i, n) => {
        const m = document.querySelector(`[data-testid="marker-${i}"]`);
        return m.dataset.lat + "," + m.dataset.lon !== before[n]; })""",
        arg=[server.simulated, before],
    )
    track += await walk(insole, START[form][0] + 2000, START[form][1] + 2000, steps=1)
    await expect(marker).to_have_attribute("data-lat", str(track[-1][0]))
    await expect(marker).to_have_attribute("data-lon", str(track[-1][1]))
    await browser.screenshot(page, f"{form}-live-map")

    # click a marker for the worker's details
    await marker.click()
    details = page.get_by_test_id("worker-details")
    await expect(details.get_by_test_id("details-name")).to_have_text(name)
    await expect(details.get_by_test_id("details-battery")).to_have_text("80 %")
    await expect(details.get_by_test_id("details-online")).to_have_text("online")

    # --- workers list: search and filter
    await show_view(page, form, "workers")
    await page.get_by_test_id("worker-search").fill(imei[-6:])
    await expect(page.locator('[data-testid^="worker-row-"]')).to_have_count(1)
    row = page.get_by_test_id(f"worker-row-{imei}")
    await expect(row.get_by_test_id("worker-name")).to_have_text(name)
    await expect(row.get_by_test_id("worker-battery")).to_have_text("80 %")
    await expect(row.get_by_test_id("worker-last-seen")).to_have_text(re.compile(r"\d+ (s|min) ago"))
    await page.get_by_test_id("worker-search").fill("")

    # --- the SOS: banner, tones, red marker, the alert on top of the open ones
    tones_before = await page.evaluate("window.__tones")
    await insole.send(insole.alarm(kind=1, lat_e7=int(track[-1][0] * 1e7), lon_e7=int(track[-1][1] * 1e7)))
    assert set((await insole.recv_acks(1)).values()) == {0}
    banner_item = page.get_by_test_id("sos-banner").locator(f'[data-imei="{imei}"]')
    await expect(banner_item).to_be_visible()
    await expect(banner_item).to_contain_text(f"SOS — {name}")
    await page.wait_for_function("before => window.__tones > before", arg=tones_before)
    await expect(marker).to_have_attribute("data-state", "alert")
    await expect(page).to_have_title(re.compile(r"SOS"))
    await page.get_by_test_id("worker-filter").select_option("alert")
    await expect(page.get_by_test_id(f"worker-row-{imei}")).to_have_attribute("data-state", "alert")
    shown = await page.locator('[data-testid^="worker-row-"]').evaluate_all("rows => rows.map(r => r.dataset.state)")
    assert set(shown) == {"alert"} and len(shown) < len(server.simulated) + 1
    await page.get_by_test_id("worker-filter").select_option("all")
    await browser.screenshot(page, f"{form}-sos")

    await show_view(page, form, "alerts")
    alert_row = page.get_by_test_id("alerts-open").locator(f'[data-imei="{imei}"][data-kind="sos"]')
    await expect(alert_row).to_be_visible()
    alert_id = int((await alert_row.get_attribute("data-testid")).removeprefix("alert-"))
    open_times = (
        await page.get_by_test_id("alerts-open")
        .locator("li.alert-row")
        .evaluate_all("rows => rows.map(r => Date.parse(r.dataset.ts))")
    )
    assert open_times == sorted(open_times, reverse=True), "open alerts are newest first"
    await expect(page.get_by_test_id("open-alert-count")).to_be_visible()

    # --- one click to acknowledge (the banner's button on a phone, the list's on a desk); the insole is told
    if form == "phone":
        await page.get_by_test_id(f"sos-ack-{alert_id}").click()
    else:
        await page.get_by_test_id(f"alert-ack-{alert_id}").click()
    command = await command_received(insole)
    assert command.cmd == CommandCode.ALARM_ACKNOWLEDGED
    acknowledged = page.get_by_test_id("alerts-acknowledged").get_by_test_id(f"alert-{alert_id}")
    await expect(acknowledged.get_by_test_id("alert-status")).to_have_text("acknowledged")
    await expect(banner_item).to_have_count(0)

    # --- resolve with a note; the timeline tells the story
    await acknowledged.get_by_test_id(f"alert-details-{alert_id}").click()
    timeline = page.get_by_test_id(f"alert-timeline-{alert_id}")
    await expect(timeline.locator('[data-action="raised"]')).to_have_count(1)
    # How it was acknowledged, too: the dashboard's requests say they come from it (X-Solewatch-Client).
    await expect(timeline.locator('[data-action="acknowledged"]')).to_contain_text(f"{server.admin[0]} via dashboard")
    note = f"Called {name}: pressed by mistake"
    await page.get_by_test_id(f"alert-note-{alert_id}").fill(note)
    await page.get_by_test_id(f"alert-resolve-{alert_id}").click()
    resolved = page.get_by_test_id("alerts-resolved").get_by_test_id(f"alert-{alert_id}")
    await expect(resolved.get_by_test_id("alert-status")).to_have_text("resolved")
    await expect(page.get_by_test_id(f"alert-resolution-{alert_id}")).to_contain_text(note)
    await expect(timeline.locator('[data-action="resolved"]')).to_have_count(1)
    await expect(marker).to_have_attribute("data-state", "ok")
    await browser.screenshot(page, f"{form}-alert-timeline")

    # --- history: the worker's track with its alert, exported
    await show_view(page, form, "history")
    await page.get_by_test_id("history-worker").select_option(imei)
    await page.get_by_test_id("history-preset-1h").click()
    await page.get_by_test_id("history-show").click()
    summary = page.get_by_test_id("history-summary")
    await expect(summary).to_have_attribute("data-points", str(len(track)))
    await expect(summary).to_have_attribute("data-alerts", "1")
    await expect(page.get_by_test_id(f"history-alert-{alert_id}")).to_contain_text("SOS")
    async with page.expect_download() as csv_download:
        await page.get_by_test_id("history-export-csv").click()
    rows = list(csv.DictReader(io.StringIO((await (await csv_download.value).path()).read_text())))
    assert [(float(r["lat"]), float(r["lon"])) for r in rows] == track
    assert {r["imei"] for r in rows} == {imei} and rows[0]["name"] == name
    async with page.expect_download() as geojson_download:
        await page.get_by_test_id("history-export-geojson").click()
    collection = json.loads((await (await geojson_download.value).path()).read_text())
    line, point = collection["features"]
    assert [tuple(c[1::-1]) for c in line["geometry"]["coordinates"]] == track
    assert point["properties"]["alert_id"] == alert_id and point["properties"]["kind"] == "sos"
    async with server.user(*server.admin) as admin:  # both files are in the audit log as exports
        exports = (await admin.get("/api/v1/audit", params={"action": "export.read", "limit": 2})).json()["items"]
    assert [(e["target"]["id"], e["detail"]["format"]) for e in exports] == [(imei, "geojson"), (imei, "csv")]
    if form == "phone":
        await page.get_by_test_id("history-view-map").click()
    await expect(page.get_by_test_id("track-line")).to_have_attribute("data-points", str(len(track)))
    await expect(page.get_by_test_id("track-line")).to_be_visible()
    await expect(page.get_by_test_id(f"track-alert-{alert_id}")).to_be_visible()
    await browser.screenshot(page, f"{form}-history")

    # --- the session survives a reload; signing out ends it
    await page.reload()
    await expect(page.get_by_test_id("app")).to_be_visible()
    await expect(page.get_by_test_id("live-status")).to_have_text("Live")
    await expect(page.get_by_test_id(f"marker-{imei}")).to_be_visible()
    await page.get_by_test_id("sign-out").click()
    await expect(page.get_by_test_id("login-screen")).to_be_visible()
    await expect(page.get_by_test_id("login-message")).to_have_text("You have signed out.")
    await expect(page.get_by_test_id(f"marker-{imei}")).to_have_count(0)
    await page.reload()
    await expect(page.get_by_test_id("login-screen")).to_be_visible()
    assert await page.evaluate("localStorage.length") == 0

    await insole.close()
    await page.context.close()
    assert traffic.off_machine == [], "the dashboard fetched something from outside this machine"
