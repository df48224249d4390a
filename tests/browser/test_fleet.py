"""An admin runs the team and the fleet from the admin area, and each change reaches
what it concerns: a role and a disabled account (the last admin kept), an insole
renamed, disabled (LOGIN_ACK 3), re-keyed (the old token gets 2, the new one logs in)
and retired with its data erased; a command sent, followed from queued to done."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.protocols.xsole import CommandCode, CommandResult
from tests.browser.conftest import Browser, TeamServer, sign_in
from tests.browser.team import add_member, connected_insole, new_tenant, open_commands, walk_through
from tests.browser.test_dashboard import command_received
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

IMEI, NAME = "356307042441153", "Rigger Jo"
WHERE = (43.6301, 7.0802)
MEMBER = ("kim@fleet-co.example", "kim's passphrase 1")


async def login_status(server: TeamServer, token: str) -> int:
    insole = await XSoleTestClient.connect("127.0.0.1", server.listener_port)
    try:
        return (await insole.login(IMEI, bytes.fromhex(token))).status
    finally:
        await insole.close()


async def test_an_admin_manages_the_team(browser: Browser, team_server: TeamServer) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Team Co")
    await add_member(server, admin, *MEMBER, role="viewer")
    page, traffic = await browser.open(server)
    await sign_in(page, *admin)
    await page.get_by_test_id("nav-admin").click()
    kim = page.get_by_test_id("users-list").locator(f'[data-email="{MEMBER[0]}"]')
    me = page.get_by_test_id("users-list").locator(f'[data-email="{admin[0]}"]')

    # --- a role changed, then the account disabled: Kim's session ends, and signing in fails
    await kim.locator('[data-testid^="user-role-"]').select_option("supervisor")
    await expect(kim.locator('[data-testid^="user-message-"]')).to_have_text("Now supervisor.")
    async with server.user(*MEMBER) as kim_api:
        assert (await kim_api.get("/api/v1/auth/me")).json()["role"] == "supervisor"
        await kim.locator('[data-testid^="user-toggle-"]').click()
        await page.get_by_test_id("confirm-disable-user-yes").click()
        await expect(kim.get_by_test_id("user-status")).to_have_text("disabled")
        deadline = time.monotonic() + 5  # CONTRACT §5: the access token is refused within 5 s
        while (await kim_api.get("/api/v1/auth/me")).status_code != 401:
            assert time.monotonic() < deadline, "a disabled user's token still works after 5 s"
            await asyncio.sleep(0.2)
    async with server.user(*admin) as api:
        refused = await api.post("/api/v1/auth/token", json={"email": MEMBER[0], "password": MEMBER[1]})
        assert refused.status_code == 401

    # --- the last active admin cannot demote itself: the API's 409 in words, the role kept
    await me.locator('[data-testid^="user-role-"]').select_option("viewer")
    await expect(me.locator('[data-testid^="user-message-"]')).to_contain_text("Could not change the role:")
    await expect(me.locator('[data-testid^="user-role-"]')).to_have_value("admin")
    async with server.user(*admin) as api:
        assert (await api.get("/api/v1/auth/me")).json()["role"] == "admin"
    assert traffic.off_machine == []


async def test_an_admin_manages_an_insole_and_a_supervisor_commands_it(
    browser: Browser, team_server: TeamServer
) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Fleet Co")
    async with server.user(*admin) as api:
        registered = await api.post("/api/v1/devices", json={"imei": IMEI, "name": NAME})
        assert registered.status_code == 201, registered.text
    token = registered.json()["token"]
    insole = await connected_insole(server, IMEI, token)
    await walk_through(insole, [WHERE])
    page, traffic = await browser.open(server)
    await sign_in(page, *admin)

    # --- a command, followed from queued to done as the insole answers
    await open_commands(page, IMEI)
    await page.get_by_test_id("command-kind").select_option("set-interval")
    await page.get_by_test_id("command-send").click()  # the interval is missing
    message = page.get_by_test_id("command-send-message")
    await expect(message).to_have_text("Interval: a whole number of seconds, 1 to 65535.")
    await page.get_by_test_id("command-seconds").fill("70000")
    await page.get_by_test_id("command-send").click()
    await expect(message).to_have_text("Interval: a whole number of seconds, 1 to 65535.")
    await page.get_by_test_id("command-seconds").fill("60")
    await page.get_by_test_id("command-send").click()
    command = await command_received(insole)
    assert (command.cmd, command.args) == (CommandCode.SET_INTERVAL, bytes.fromhex("003c"))
    first = page.get_by_test_id("commands-list").locator("li").first
    await expect(first.get_by_test_id("command-status")).to_have_text("sent")
    await insole.send(CommandResult(insole.next_seq(), command.seq, 0))
    await expect(first.get_by_test_id("command-status")).to_have_text("done")  # refreshed while shown
    await expect(first).to_contain_text("every 60 s")
    await browser.screenshot(page, "desktop-commands")

    # --- renamed: the map and the lists follow
    await page.get_by_test_id("nav-admin").click()
    await page.get_by_test_id("admin-tab-devices").click()
    row = page.get_by_test_id(f"device-{IMEI}")
    await row.get_by_test_id(f"device-rename-{IMEI}").click()
    await page.get_by_test_id(f"rename-input-{IMEI}").fill("Rigger Jo (night)")
    await page.get_by_test_id(f"rename-save-{IMEI}").click()
    await expect(row.get_by_test_id("device-name")).to_have_text("Rigger Jo (night)")
    await page.get_by_test_id("nav-workers").click()
    await expect(page.get_by_test_id(f"worker-row-{IMEI}").get_by_test_id("worker-name")).to_have_text(
        "Rigger Jo (night)"
    )
    await page.get_by_test_id("nav-admin").click()

    # --- disabled: the connection is closed and LOGIN gets status 3; enabled again, it logs in
    await row.get_by_test_id(f"device-toggle-{IMEI}").click()
    await page.get_by_test_id("confirm-disable-device-yes").click()
    await expect(row.get_by_test_id("device-state")).to_have_text("disabled")
    assert await insole.closed_by_server(timeout=10)
    assert await login_status(server, token) == 3
    await row.get_by_test_id(f"device-toggle-{IMEI}").click()
    await expect(row.get_by_test_id("device-state")).to_have_text("enabled")
    assert await login_status(server, token) == 0

    # --- a new token, shown once: the old one gets LOGIN_ACK 2, the new one logs in
    await row.get_by_test_id(f"device-rotate-{IMEI}").click()
    await page.get_by_test_id("confirm-rotate-yes").click()
    new_token = await page.get_by_test_id(f"device-token-{IMEI}-value").text_content()
    assert new_token and new_token != token
    assert await login_status(server, token) == 2
    assert await login_status(server, new_token) == 0

    # --- retired with its data erased, after a confirmation that says so
    await row.get_by_test_id(f"device-retire-{IMEI}").click()
    dialog = page.get_by_test_id("confirm-retire")
    await expect(dialog).to_contain_text("can no longer log in")
    await dialog.get_by_test_id("confirm-retire-erase").check()
    await browser.screenshot(page, "desktop-admin-retire")
    await page.get_by_test_id("confirm-retire-yes").click()
    await expect(page.get_by_test_id("devices-message")).to_have_text(
        "Rigger Jo (night) was retired and its data erased."
    )
    await expect(row).to_have_count(0)
    async with server.user(*admin) as api:
        assert (await api.get(f"/api/v1/devices/{IMEI}")).status_code == 404
    assert await login_status(server, new_token) == 1
    await expect(page.get_by_test_id(f"marker-{IMEI}")).to_have_count(0)
    await insole.close()
    assert traffic.off_machine == []
