"""An admin sets how long the tenant keeps its data and when positions show (CONTRACT §8),
in the admin area's data section: out-of-range numbers are refused in words and store
nothing, and only what was changed is sent (the API merges it)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Browser, TeamServer, sign_in
from tests.browser.team import new_tenant

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

DEFAULTS = {"telemetry_retention_days": 90, "alert_retention_days": 730, "location_visibility": "always"}


async def test_an_admin_changes_the_retention_and_the_visibility(browser: Browser, team_server: TeamServer) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Retention Co")
    page, _ = await browser.open(server)
    await sign_in(page, *admin)
    await page.get_by_test_id("nav-admin").click()
    await page.get_by_test_id("admin-tab-data").click()

    telemetry = page.get_by_test_id("data-telemetry_retention_days")
    alerts = page.get_by_test_id("data-alert_retention_days")
    visibility = page.get_by_test_id("data-location_visibility")
    message = page.get_by_test_id("data-settings-message")
    await expect(telemetry).to_have_value("90")
    await expect(alerts).to_have_value("730")
    await expect(visibility).to_have_value("always")

    await telemetry.fill("0")
    await page.get_by_test_id("data-settings-save").click()
    await expect(message).to_have_text("Keep positions, activity and heartbeats (days): a whole number from 1 to 3650.")
    async with server.user(*admin) as api:
        assert (await api.get("/api/v1/tenant/settings")).json() == DEFAULTS

    await telemetry.fill("30")
    await visibility.select_option("alerts_only")
    await page.get_by_test_id("data-settings-save").click()
    await expect(message).to_have_text("Saved.")
    async with server.user(*admin) as api:
        assert (await api.get("/api/v1/tenant/settings")).json() == DEFAULTS | {
            "telemetry_retention_days": 30,
            "location_visibility": "alerts_only",
        }
        log = (await api.get("/api/v1/audit", params={"action": "settings.update"})).json()["items"]
    assert [entry["target"]["type"] for entry in log] == ["tenant"]

    await page.reload()
    await page.get_by_test_id("nav-admin").click()
    await page.get_by_test_id("admin-tab-data").click()
    await expect(telemetry).to_have_value("30")
    await expect(visibility).to_have_value("alerts_only")
    await page.get_by_test_id("data-settings-save").click()
    await expect(message).to_have_text("Nothing changed.")
