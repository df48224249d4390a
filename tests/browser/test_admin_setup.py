"""An admin sets a site up in the admin area: registers an insole (its token shown once,
copied, and accepted by the insole), its detection settings, the contacts, and the
escalation policy. Wrong input is refused in words and stores nothing."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import Browser, TeamServer, sign_in
from tests.browser.team import connected_insole, new_tenant

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

IMEI, NAME = "356307042441120", "Night porter Fred"


async def test_an_admin_registers_an_insole_and_sets_up_alerting(browser: Browser, team_server: TeamServer) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Setup Co")
    page, traffic = await browser.open(server)
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await sign_in(page, *admin)
    await page.get_by_test_id("nav-admin").click()

    # --- register an insole: a wrong IMEI is refused; the token is shown once, copied, and works
    await page.get_by_test_id("admin-tab-devices").click()
    await page.get_by_test_id("register-imei").fill("12345")
    await page.get_by_test_id("register-name").fill(NAME)
    await page.get_by_test_id("register-submit").click()
    await expect(page.get_by_test_id("register-message")).to_have_text("The IMEI is the insole's 15 digits.")
    await page.get_by_test_id("register-imei").fill(IMEI)
    await page.get_by_test_id("register-submit").click()
    token = page.get_by_test_id("new-device-token-value")
    await expect(token).to_have_text(re.compile(r"^[0-9a-f]{32}$"))
    await page.get_by_test_id("new-device-token-copy").click()
    await expect(page.get_by_test_id("new-device-token-copied")).to_have_text("Copied.")
    shown = await token.text_content()
    assert await page.evaluate("navigator.clipboard.readText()") == shown
    insole = await connected_insole(server, IMEI, shown)  # the token shown is the device's secret
    await insole.close()
    await expect(page.get_by_test_id(f"device-{IMEI}").get_by_test_id("device-name")).to_have_text(NAME)
    await browser.screenshot(page, "desktop-admin-devices")
    # the same IMEI again: the API's answer, in words
    await page.get_by_test_id("register-imei").fill(IMEI)
    await page.get_by_test_id("register-name").fill("Someone else")
    await page.get_by_test_id("register-submit").click()
    await expect(page.get_by_test_id("register-message")).to_have_text(
        "Could not register the device: a device with this IMEI is already registered"
    )

    # --- its settings: hours that are no span are refused and nothing is saved; then saved
    await page.get_by_test_id(f"device-settings-{IMEI}").click()
    await page.get_by_test_id(f"settings-offline-{IMEI}").fill("5")
    await page.get_by_test_id(f"settings-shift-on-{IMEI}").check()
    await page.get_by_test_id(f"settings-hours-{IMEI}").fill("25-3")
    await page.get_by_test_id(f"settings-timezone-{IMEI}").fill("Europe/Paris")
    await page.get_by_test_id(f"settings-save-{IMEI}").click()
    message = page.get_by_test_id(f"settings-message-{IMEI}")
    await expect(message).to_have_text('Shift hours: "25-3" is not a span within 0-24.')
    async with server.user(*admin) as api:
        assert (await api.get(f"/api/v1/devices/{IMEI}/settings")).json() == {"offline_after": None, "shift": None}
    await page.get_by_test_id(f"settings-timezone-{IMEI}").fill("Mars/Olympus")
    await page.get_by_test_id(f"settings-hours-{IMEI}").fill("8-12, 13:30-17")
    await page.get_by_test_id(f"settings-save-{IMEI}").click()
    await expect(message).to_contain_text("unknown timezone 'Mars/Olympus'")  # the API's 422, in words
    await page.get_by_test_id(f"settings-timezone-{IMEI}").fill("Europe/Paris")
    await page.get_by_test_id(f"settings-save-{IMEI}").click()
    await expect(message).to_have_text("Saved.")
    async with server.user(*admin) as api:
        assert (await api.get(f"/api/v1/devices/{IMEI}/settings")).json() == {
            "offline_after": 300,
            "shift": {"hours": [[8, 12], [13.5, 17]], "timezone": "Europe/Paris"},
        }
    await page.get_by_test_id(f"device-settings-{IMEI}").click()  # opened again: read back from the server
    await expect(page.get_by_test_id(f"settings-hours-{IMEI}")).to_have_value("8-12, 13:30-17")
    await expect(page.get_by_test_id(f"settings-offline-{IMEI}")).to_have_value("5")

    # --- contacts: unreachable or badly written ones are refused; three added, one removed
    await page.get_by_test_id("admin-tab-contacts").click()
    await page.get_by_test_id("contact-name").fill("Night desk")
    await page.get_by_test_id("contact-submit").click()
    add_message = page.get_by_test_id("contact-add-message")
    await expect(add_message).to_have_text("Give an email address, a phone number, or both.")
    await page.get_by_test_id("contact-phone").fill("0612 34 56 78")
    await page.get_by_test_id("contact-submit").click()
    await expect(add_message).to_contain_text("international form")
    await page.get_by_test_id("contact-phone").fill("+33 6 12 34 56 78")
    await page.get_by_test_id("contact-email").fill("night@setup-co.example")
    for kind in ("no_motion", "low_battery", "off_foot", "tamper", "offline", "geofence_exit", "geofence_enter"):
        await page.get_by_test_id(f"contact-kind-{kind}").uncheck()
    await page.get_by_test_id("contact-submit").click()
    await expect(add_message).to_have_text("Night desk added.")
    for name, email in (("Site manager", "manager@setup-co.example"), ("Temp", "temp@setup-co.example")):
        await page.get_by_test_id("contact-name").fill(name)
        await page.get_by_test_id("contact-email").fill(email)
        await page.get_by_test_id("contact-submit").click()
        await expect(add_message).to_have_text(f"{name} added.")
    async with server.user(*admin) as api:
        contacts = {c["name"]: c for c in (await api.get("/api/v1/contacts")).json()["items"]}
    assert contacts["Night desk"]["phone"] == "+33612345678" and contacts["Night desk"]["kinds"] == ["sos", "fall"]
    temp = contacts["Temp"]["id"]
    await page.get_by_test_id(f"contact-delete-{temp}").click()
    await page.get_by_test_id("confirm-delete-contact-no").click()  # thought better of it
    await expect(page.get_by_test_id(f"contact-{temp}")).to_be_visible()
    await page.get_by_test_id(f"contact-delete-{temp}").click()
    await page.get_by_test_id("confirm-delete-contact-yes").click()
    await expect(page.get_by_test_id(f"contact-{temp}")).to_have_count(0)
    async with server.user(*admin) as api:
        assert sorted(c["name"] for c in (await api.get("/api/v1/contacts")).json()["items"]) == [
            "Night desk",
            "Site manager",
        ]

    # --- escalation: a call step on a server that cannot call is refused (the API's words); then saved
    await page.get_by_test_id("admin-tab-escalation").click()
    steps = page.get_by_test_id("escalation-step")
    await page.get_by_test_id("escalation-add").click()
    first = steps.nth(0)
    await first.get_by_label("Night desk").check()
    await first.get_by_label("Email").uncheck()
    await first.get_by_label("Then wait (minutes) before the next step").fill("2")
    await page.get_by_test_id("escalation-add").click()
    second = steps.nth(1)
    await second.get_by_label("Site manager").check()
    await second.get_by_label("Phone call").check()
    await page.get_by_test_id("escalation-save").click()
    escalation_message = page.get_by_test_id("escalation-message")
    await expect(escalation_message).to_contain_text(
        "Could not save the escalation policy: steps channels: voice calls need"
    )
    async with server.user(*admin) as api:
        assert (await api.get("/api/v1/escalation-policy")).json()["steps"] == []
    await second.get_by_label("Phone call").uncheck()
    await page.get_by_test_id("escalation-save").click()
    await expect(escalation_message).to_have_text("Saved: 2 step(s).")
    await browser.screenshot(page, "desktop-admin-escalation")
    async with server.user(*admin) as api:
        policy = (await api.get("/api/v1/escalation-policy")).json()
    assert policy["steps"] == [
        {"contacts": [contacts["Night desk"]["id"]], "wait_s": 120, "channels": ["sms"]},
        {"contacts": [contacts["Site manager"]["id"]], "wait_s": 300, "channels": ["sms", "email"]},
    ]
    await page.context.close()
    assert traffic.off_machine == []
