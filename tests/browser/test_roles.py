"""Each role sees only the buttons it can use: a viewer no admin area, no acknowledge and
no command form; a supervisor acknowledges and has the command form but no admin area.
Neither page ever loads the admin area, its code or its data."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Browser, TeamServer, sign_in
from tests.browser.team import add_member, connected_insole, new_tenant, open_commands, walk_through

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

IMEI, NAME = "356307042441138", "Roofer Gus"
WHERE = (43.6201, 7.0702)
VIEWER = ("viewer@roles-co.example", "viewer passphrase 1")
SUPERVISOR = ("supervisor@roles-co.example", "supervisor passphrase 1")
# What the admin area loads: other roles' pages never ask for it.
ADMIN_AREA = ("/api/v1/users", "/api/v1/audit", "/api/v1/escalation-policy", "/api/v1/contacts")


def watch_requests(page: Any) -> list[str]:
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    return asked


async def test_viewers_and_supervisors_see_only_what_they_can_use(browser: Browser, team_server: TeamServer) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Roles Co")
    await add_member(server, admin, *VIEWER, role="viewer")
    await add_member(server, admin, *SUPERVISOR, role="supervisor")
    async with server.user(*admin) as api:
        registered = await api.post("/api/v1/devices", json={"imei": IMEI, "name": NAME})
        assert registered.status_code == 201, registered.text
    insole = await connected_insole(server, IMEI, registered.json()["token"])
    await walk_through(insole, [WHERE])
    await insole.send(insole.alarm(kind=1, lat_e7=round(WHERE[0] * 1e7), lon_e7=round(WHERE[1] * 1e7)))
    assert set((await insole.recv_acks(1)).values()) == {0}

    # --- a viewer: the alert and the worker, and nothing to press but views
    viewer, _ = await browser.open(server, "phone")
    viewer_asked = watch_requests(viewer)
    await sign_in(viewer, *VIEWER)
    await expect(viewer.get_by_test_id("sos-banner")).to_contain_text(f"SOS — {NAME}")
    banner_ack = viewer.locator('[data-testid^="sos-ack-"]')
    await expect(banner_ack).to_have_count(1)  # in the page, not shown
    await expect(banner_ack).to_be_hidden()
    await expect(viewer.get_by_test_id("nav-admin")).to_be_hidden()
    await viewer.get_by_test_id("nav-alerts").click()
    row = viewer.get_by_test_id("alerts-open").locator(f'[data-imei="{IMEI}"]')
    await expect(row).to_be_visible()
    await expect(row.locator('[data-testid^="alert-ack-"]')).to_have_count(1)
    await expect(row.locator('[data-testid^="alert-ack-"]')).to_be_hidden()
    await viewer.get_by_test_id("nav-map").click()
    await open_commands(viewer, IMEI)
    await expect(viewer.get_by_test_id("command-form")).to_be_hidden()
    await expect(viewer.get_by_test_id("commands-message")).to_have_text("No command sent to this worker yet.")
    await expect(viewer.get_by_test_id("panel-admin")).to_be_hidden()
    await expect(viewer.locator("button:visible", has_text="Acknowledge")).to_have_count(0)
    await browser.screenshot(viewer, "phone-viewer-commands")

    # --- a supervisor: acknowledges, has the command form, still no admin area
    supervisor, _ = await browser.open(server)
    supervisor_asked = watch_requests(supervisor)
    await sign_in(supervisor, *SUPERVISOR)
    await expect(supervisor.get_by_test_id("nav-admin")).to_be_hidden()
    await expect(supervisor.get_by_test_id("panel-admin")).to_be_hidden()
    await supervisor.get_by_test_id("nav-alerts").click()
    row = supervisor.get_by_test_id("alerts-open").locator(f'[data-imei="{IMEI}"]')
    await row.locator('[data-testid^="alert-ack-"]').click()
    acknowledged = supervisor.get_by_test_id("alerts-acknowledged").locator(f'[data-imei="{IMEI}"]')
    await expect(acknowledged.get_by_test_id("alert-status")).to_have_text("acknowledged")
    await open_commands(supervisor, IMEI)
    await expect(supervisor.get_by_test_id("command-form")).to_be_visible()
    await expect(supervisor.get_by_test_id("command-send")).to_be_enabled()

    # --- and the admin has the admin area
    admin_page, _ = await browser.open(server)
    await sign_in(admin_page, *admin)
    await expect(admin_page.get_by_test_id("nav-admin")).to_be_visible()

    for asked in (viewer_asked, supervisor_asked):
        assert not [url for url in asked if any(path in url for path in ADMIN_AREA)], asked
        assert not [url for url in asked if "/js/admin" in url], "the admin area's code is for admins only"
    await insole.close()
