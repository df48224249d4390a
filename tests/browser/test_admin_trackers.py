"""An admin registers a tracker of another protocol (CONTRACT §10) in the admin area: its protocol's
IMEI rule is said in words, it gets no token, and the admin and workers lists say what it is."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Browser, TeamServer, sign_in
from tests.browser.team import new_tenant

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

IMEI, NAME = "4209951530", "Gate guard Gus"


async def test_an_admin_registers_a_tracker_and_sees_its_protocol_and_model(
    browser: Browser, team_server: TeamServer
) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Mixed Fleet Co")
    page, _ = await browser.open(server)
    await sign_in(page, *admin)
    await page.get_by_test_id("nav-admin").click()
    await page.get_by_test_id("admin-tab-devices").click()

    # 10 digits: too short for a GT06, right for an H02.
    await page.get_by_test_id("register-protocol").select_option("gt06")
    await page.get_by_test_id("register-imei").fill(IMEI)
    await page.get_by_test_id("register-name").fill(NAME)
    await page.get_by_test_id("register-submit").click()
    await expect(page.get_by_test_id("register-message")).to_have_text("A GT06 device's IMEI is 15 digits.")
    await page.get_by_test_id("register-protocol").select_option("h02")
    await page.get_by_test_id("register-model").fill("Sinotrack ST-901")
    await page.get_by_test_id("register-submit").click()

    await expect(page.get_by_test_id("new-device-no-token")).to_contain_text("needs no token")
    await expect(page.get_by_test_id("new-device-token-value")).to_have_count(0)
    row = page.get_by_test_id(f"device-{IMEI}")
    await expect(row.get_by_test_id("device-kind")).to_have_text("H02 · Sinotrack ST-901")
    await expect(page.get_by_test_id(f"device-rotate-{IMEI}")).to_have_count(0)  # nothing to rotate

    await page.get_by_test_id("nav-workers").click()
    worker = page.get_by_test_id(f"worker-row-{IMEI}")
    await expect(worker.get_by_test_id("worker-kind")).to_have_text("H02 · Sinotrack ST-901")
