"""The dashboard's Reports tab (issue 20, item 3) on a real `solewatch run`: a worker's
insole sends three past days of activity and one day's walk between two stops, then an
SOS that the admin acknowledges. The tab must chart the worker's days, count the alert
in the response times, save the workers report as CSV, list the trips and stops and
put them on the map; a viewer on a phone sees the same, and the page prints without
its navigation."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.browser.conftest import Browser, TeamServer, sign_in
from tests.browser.team import add_member, connected_insole, new_tenant
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

IMEI, NAME = "356307042441211", "Surveyor Rosa"
VIEWER = ("viewer@reports-co.example", "viewer passphrase 1")
FED_DAYS = (3, 2, 1)  # days ago with an hour of activity; the last one also has the walk
STOP_A = (48.137200, 11.575600)
STEP_E7 = 5400  # 1e-7 degrees of latitude a minute: ~60 m, a walk
WALKING, STILL = 2, 1
VALID_FIX = 0x01


def ten_am(days_ago: int) -> datetime:
    """10:00 local time that many days ago: the browser charts days in the same zone."""
    today = datetime.now().astimezone().replace(hour=10, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


async def send_all(insole: XSoleTestClient, frames: list[Any]) -> None:
    for start in range(0, len(frames), 100):
        batch = frames[start : start + 100]
        await insole.send(*batch)
        assert set((await insole.recv_acks(len(batch))).values()) == {0}


async def feed_past_days(insole: XSoleTestClient) -> None:
    """An hour of activity frames (every 30 s: walking, then still) on each fed day; on the
    last one, 15 min at a stop, a 10 min walk north and 15 min at a second stop."""
    frames: list[Any] = []
    for days_ago in FED_DAYS:
        start = int(ten_am(days_ago).timestamp())
        frames += [
            insole.activity(ts=start + 30 * i, state=WALKING if i < 60 else STILL, steps=40 if i < 60 else 0)
            for i in range(121)
        ]
    start = int(ten_am(FED_DAYS[-1]).timestamp())
    lat0, lon0 = round(STOP_A[0] * 1e7), round(STOP_A[1] * 1e7)
    track = [(lat0, 0)] * 15 + [(lat0 + STEP_E7 * i, 100) for i in range(1, 11)] + [(lat0 + STEP_E7 * 10, 0)] * 16
    frames += [
        insole.position(ts=start + 60 * i, lat_e7=lat, lon_e7=lon0, speed_cms=speed, flags=VALID_FIX)
        for i, (lat, speed) in enumerate(track)
    ]
    await send_all(insole, frames)


async def acknowledged_sos(server: TeamServer, admin: tuple[str, str], insole: XSoleTestClient) -> int:
    """An SOS now, acknowledged by the admin through the API; its id."""
    await insole.send(insole.alarm(kind=1, ts=int(time.time())))
    assert set((await insole.recv_acks(1)).values()) == {0}
    async with server.user(*admin) as api:
        deadline = time.monotonic() + 10
        while not (alerts := (await api.get("/api/v1/alerts", params={"imei": IMEI})).json()["items"]):
            assert time.monotonic() < deadline, "the SOS never became an alert"
        acked = await api.post(f"/api/v1/alerts/{alerts[0]['id']}/ack")
        assert acked.status_code == 200, acked.text
    return int(alerts[0]["id"])


async def test_the_reports_tab_charts_counts_downloads_and_maps(browser: Browser, team_server: TeamServer) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Reports Co")
    await add_member(server, admin, *VIEWER, role="viewer")
    async with server.user(*admin) as api:
        registered = await api.post("/api/v1/devices", json={"imei": IMEI, "name": NAME})
        assert registered.status_code == 201, registered.text
    insole = await connected_insole(server, IMEI, registered.json()["token"])
    await feed_past_days(insole)
    await acknowledged_sos(server, admin, insole)

    page, traffic = await browser.open(server)
    await sign_in(page, *admin)
    await page.get_by_test_id("nav-reports").click()
    await expect(page.get_by_test_id("reports-preset-7d")).to_have_attribute("aria-pressed", "true")

    # --- a chart for the worker: one bar per day of the last 7, with time on the fed days
    chart = page.get_by_test_id(f"activity-chart-{IMEI}")
    await expect(chart).to_be_visible()
    await expect(chart.locator(".chart-bar")).to_have_count(7)
    for days_ago in FED_DAYS:
        bar = page.get_by_test_id(f"chart-bar-{IMEI}-{ten_am(days_ago).date().isoformat()}")
        await expect(bar.locator('rect[data-state="walking_s"]')).to_have_count(1)
        await expect(bar.locator('rect[data-state="still_s"]')).to_have_count(1)
        assert int(await bar.get_attribute("data-seconds") or 0) >= 3500  # an hour, give or take a frame
    await expect(chart.get_by_role("img")).to_have_attribute("aria-label", re.compile(f"one bar per day, for {NAME}"))

    # --- the team's response times: the one SOS, acknowledged
    await expect(page.get_by_test_id("report-alerts-total")).to_contain_text("1")
    sos = page.get_by_test_id("report-alerts-kind-sos")
    await expect(sos.locator('[data-field="total"]')).to_have_text("1")
    await expect(sos.locator('[data-field="acknowledged"]')).to_have_text("1")
    await expect(page.get_by_test_id("report-ack-median")).not_to_contain_text("—")
    await expect(page.get_by_test_id("report-slow-none")).to_be_visible()  # acknowledged at once

    # --- the workers table, and its CSV as a file with the worker's row
    row = page.get_by_test_id(f"report-worker-{IMEI}")
    await expect(row).to_contain_text(NAME)
    await expect(row.locator('[data-field="distance"]')).to_have_text(re.compile(r"^(59\d|60\d) m$"))  # the walk
    async with page.expect_download() as saved:
        await page.get_by_test_id("report-workers-csv").click()
    download = await saved.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO((await download.path()).read_text())))
    assert [(r["imei"], r["name"]) for r in rows] == [(IMEI, NAME)]

    # --- trips and stops of the worker: listed, and on the map
    await page.get_by_test_id("report-trips-worker").select_option(IMEI)
    await page.get_by_test_id("report-trips-show").click()
    trips = page.get_by_test_id("report-trips-list")
    await expect(trips.locator("li")).to_have_count(3)
    assert await trips.locator("li").evaluate_all("rows => rows.map(r => r.dataset.type)") == ["stop", "trip", "stop"]
    await expect(page.locator('[data-testid^="report-stop-marker-"]')).to_have_count(2)
    await expect(page.get_by_test_id("report-trip-line-1")).to_be_attached()  # due north: a line with no width
    await browser.screenshot(page, "desktop-reports")

    # --- printing: the report alone, without the navigation or the map
    await page.emulate_media(media="print")
    await expect(page.get_by_test_id("nav")).to_be_hidden()
    await expect(page.get_by_test_id("map")).to_be_hidden()
    await expect(chart).to_be_visible()
    await page.screenshot(path=str(browser.screenshots / "desktop-reports-print.png"), full_page=True)
    await page.emulate_media(media="screen")

    # --- over 31 days, one bar per week, and the page says so
    await page.get_by_test_id("reports-first-day").fill(ten_am(40).date().isoformat())
    await page.get_by_test_id("reports-last-day").fill(ten_am(0).date().isoformat())
    await page.get_by_test_id("reports-custom-apply").click()
    await expect(page.get_by_test_id("report-activity-note")).to_contain_text("one bar per week")
    await expect(chart.locator(".chart-bar")).to_have_count(6)  # 41 days
    await page.context.close()

    # --- a viewer on a phone: the same report, on a page no wider than the screen
    phone, phone_traffic = await browser.open(server, "phone")
    await sign_in(phone, *VIEWER)
    await phone.get_by_test_id("nav-reports").click()
    await expect(phone.get_by_test_id(f"activity-chart-{IMEI}")).to_be_visible()
    await expect(phone.get_by_test_id("report-alerts-kind-sos").locator('[data-field="total"]')).to_have_text("1")
    assert await phone.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    await browser.screenshot(phone, "phone-reports")
    await phone.get_by_test_id(f"activity-chart-{IMEI}").scroll_into_view_if_needed()
    await browser.screenshot(phone, "phone-reports-chart")
    await phone.context.close()

    await insole.close()
    assert traffic.off_machine == [] and phone_traffic.off_machine == []


async def test_report_days_are_the_browsers_days_across_a_clock_change(
    browser: Browser, team_server: TeamServer
) -> None:
    """A week over the spring clock change in Berlin is 7 bars of local days (one of them 23 h),
    sent to the API as the UTC instants of local midnights; 40 days are charted by the week."""
    context = await browser.browser.new_context(timezone_id="Europe/Berlin", locale="en-GB")
    page = await context.new_page()
    await page.goto(team_server.url + "/")
    days = await page.evaluate(
        """async () => {
        const app = document.querySelector('script[type="module"]').src;
        const { bucketsOf, customRange, isoRange } = await import(app.replace(/app\\.js$/, "report-range.js"));
        const week = customRange("2026-03-25", "2026-03-31");
        const long = bucketsOf(customRange("2026-03-01", "2026-04-09"));
        return {
            range: isoRange(week),
            unit: bucketsOf(week).unit,
            bars: bucketsOf(week).buckets.map((b) => [b.key, (b.end - b.start) / 3600000]),
            weeks: [long.unit, long.buckets.length, long.buckets.at(-1).key],
        };
    }"""
    )
    await context.close()
    assert days["range"] == {"since": "2026-03-24T23:00:00.000Z", "until": "2026-03-31T22:00:00.000Z"}
    assert days["unit"] == "day"
    assert days["bars"] == [[f"2026-03-{d}", 23 if d == 29 else 24] for d in range(25, 32)]
    assert days["weeks"] == ["week", 6, "2026-04-05"]  # 40 days: 5 weeks and 5 days


async def test_an_admin_asks_for_the_weekly_digest_from_the_account_view(
    browser: Browser, team_server: TeamServer
) -> None:
    from playwright.async_api import expect

    admin = await new_tenant(team_server, "Digest Co")
    page, _ = await browser.open(team_server)
    await sign_in(page, *admin)
    await page.get_by_test_id("account-button").click()
    box = page.get_by_test_id("digest-weekly")
    await expect(box).to_be_enabled()
    await expect(box).not_to_be_checked()  # off until asked for
    await box.check()
    await expect(page.get_by_test_id("digest-message")).to_contain_text("every week")
    async with team_server.user(*admin) as api:
        assert (await api.get("/api/v1/auth/me/digest")).json() == {"weekly_digest": True}
    await page.reload()
    await expect(page.get_by_test_id("app")).to_be_visible()
    await page.get_by_test_id("account-button").click()
    await expect(page.get_by_test_id("digest-weekly")).to_be_checked()
