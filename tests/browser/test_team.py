"""A safety team in the browser: an admin invites a supervisor, who accepts from the
emailed link, signs in and acknowledges an SOS, and the admin finds both in the audit
log; a forgotten password reset from the emailed link; a password changed when signed in.
The emails come from the team server's SMTP sink, as a user would receive them."""

from __future__ import annotations

import pytest

from shared.protocols.xsole import CommandCode
from tests.browser.conftest import Browser, TeamServer, sign_in
from tests.browser.team import connected_insole, emailed_link, new_tenant, walk_through
from tests.browser.test_dashboard import command_received

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

IMEI, NAME = "356307042441146", "Welder Ines"
WHERE = (43.6251, 7.0752)
HANA = ("Hana Okafor", "hana@invite-co.example", "a long passphrase for hana")


async def test_an_invited_supervisor_acknowledges_an_sos_and_the_admin_audits_both(
    browser: Browser, team_server: TeamServer
) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Invite Co")
    admin_page, traffic = await browser.open(server)
    await sign_in(admin_page, *admin)

    # --- the admin invites Hana as a supervisor
    await admin_page.get_by_test_id("nav-admin").click()
    await admin_page.get_by_test_id("invite-name").fill(HANA[0])
    await admin_page.get_by_test_id("invite-email").fill(HANA[1])
    await admin_page.get_by_test_id("invite-role").select_option("supervisor")
    await admin_page.get_by_test_id("invite-submit").click()
    await expect(admin_page.get_by_test_id("invite-message")).to_contain_text(f"Invitation sent to {HANA[1]}")
    hana_row = admin_page.get_by_test_id("users-list").locator(f'[data-email="{HANA[1]}"]')
    await expect(hana_row.get_by_test_id("user-status")).to_have_text("invited")
    await browser.screenshot(admin_page, "desktop-admin-users")
    # the same email again: the API's 409, in words
    await admin_page.get_by_test_id("invite-name").fill("Someone")
    await admin_page.get_by_test_id("invite-email").fill(HANA[1])
    await admin_page.get_by_test_id("invite-submit").click()
    await expect(admin_page.get_by_test_id("invite-message")).to_contain_text("Could not invite them:")

    # --- Hana opens the emailed link on her phone, chooses a password and is signed in
    link = await emailed_link(server, HANA[1], "accept-invite")
    assert link.startswith(f"{server.url}/#/accept-invite?token="), link
    hana, _ = await browser.open(server, "phone")
    await hana.goto(link)
    form = hana.get_by_test_id("accept-invite-form")
    await expect(form).to_be_visible()
    await browser.screenshot(hana, "phone-accept-invite")
    await hana.get_by_test_id("accept-invite-password").fill("too short")
    await hana.get_by_test_id("accept-invite-repeat").fill("too short")
    await hana.get_by_test_id("accept-invite-submit").click()
    await expect(hana.get_by_test_id("accept-invite-message")).to_have_text(
        "Choose a password of at least 12 characters."
    )
    await hana.get_by_test_id("accept-invite-password").fill(HANA[2])
    await hana.get_by_test_id("accept-invite-repeat").fill(HANA[2] + "!")
    await hana.get_by_test_id("accept-invite-submit").click()
    await expect(hana.get_by_test_id("accept-invite-message")).to_contain_text("The two passwords differ")
    await hana.get_by_test_id("accept-invite-repeat").fill(HANA[2])
    await hana.get_by_test_id("accept-invite-submit").click()
    await expect(hana.get_by_test_id("app")).to_be_visible()
    await expect(hana.get_by_test_id("live-status")).to_have_text("Live")
    assert "token=" not in hana.url, "the spent link stays out of the address bar"
    await expect(hana.get_by_test_id("nav-admin")).to_be_hidden()

    # the link works once: opened again, it says so
    again, _ = await browser.open(server)
    await again.goto(link)
    await again.get_by_test_id("accept-invite-password").fill("another passphrase 2")
    await again.get_by_test_id("accept-invite-repeat").fill("another passphrase 2")
    await again.get_by_test_id("accept-invite-submit").click()
    await expect(again.get_by_test_id("accept-invite-message")).to_contain_text("This link cannot be used any more")
    await expect(again.get_by_test_id("app")).to_be_hidden()
    await again.context.close()

    # --- a worker's SOS: Hana acknowledges it from the banner; the insole is told
    async with server.user(*admin) as api:
        registered = await api.post("/api/v1/devices", json={"imei": IMEI, "name": NAME})
        assert registered.status_code == 201, registered.text
    insole = await connected_insole(server, IMEI, registered.json()["token"])
    await walk_through(insole, [WHERE])
    await insole.send(insole.alarm(kind=1, lat_e7=round(WHERE[0] * 1e7), lon_e7=round(WHERE[1] * 1e7)))
    assert set((await insole.recv_acks(1)).values()) == {0}
    ack = hana.locator('[data-testid^="sos-ack-"]')
    await expect(ack).to_be_visible()
    alert_id = (await ack.get_attribute("data-testid")).removeprefix("sos-ack-")
    await ack.click()
    assert (await command_received(insole)).cmd == CommandCode.ALARM_ACKNOWLEDGED
    await expect(hana.get_by_test_id("sos-banner")).to_be_hidden()

    # --- the admin sees both in the audit log, and Hana active
    await admin_page.get_by_test_id("admin-tab-users").click()
    await expect(hana_row.get_by_test_id("user-status")).to_have_text("active")
    await admin_page.get_by_test_id("admin-tab-audit").click()
    entries = admin_page.get_by_test_id("audit-list")
    invite = entries.locator('[data-action="user.invite"]')
    await expect(invite).to_have_count(1)
    await expect(invite.get_by_test_id("audit-entry-actor")).to_contain_text(admin[0])
    acked = entries.locator('[data-action="alert.ack"]')
    await expect(acked).to_have_count(1)
    await expect(acked.get_by_test_id("audit-entry-actor")).to_contain_text(HANA[1])
    await expect(acked.get_by_test_id("audit-entry-actor")).to_contain_text(f"alert {alert_id}")
    await browser.screenshot(admin_page, "desktop-admin-audit")
    # filtered by action: a half-written one is refused; then only the acknowledgement
    await admin_page.get_by_test_id("audit-action").fill("alert")
    await admin_page.get_by_test_id("audit-filter").click()
    await expect(admin_page.get_by_test_id("audit-message")).to_contain_text("An action is written like alert.ack")
    await admin_page.get_by_test_id("audit-action").fill("alert.ack")
    await admin_page.get_by_test_id("audit-filter").click()
    await expect(entries.locator("li")).to_have_count(1)
    await expect(entries.locator("li").first).to_have_attribute("data-action", "alert.ack")
    # a time range before any of it: nothing
    await admin_page.get_by_test_id("audit-since").fill("2020-01-01T00:00:00")
    await admin_page.get_by_test_id("audit-until").fill("2020-01-02T00:00:00")
    await admin_page.get_by_test_id("audit-filter").click()
    await expect(admin_page.get_by_test_id("audit-message")).to_have_text("No entry matches.")
    await expect(entries.locator("li")).to_have_count(0)

    await insole.close()
    assert traffic.off_machine == []


async def test_a_forgotten_password_is_reset_from_the_emailed_link_and_changed_later(
    browser: Browser, team_server: TeamServer
) -> None:
    from playwright.async_api import expect

    server = team_server
    email, old = await new_tenant(server, "Reset Co")
    page, _ = await browser.open(server)

    # --- "forgot password": the same answer for an unknown address as for a known one
    await page.get_by_test_id("forgot-password-link").click()
    await page.get_by_test_id("forgot-password-email").fill("nobody@reset-co.example")
    await page.get_by_test_id("forgot-password-submit").click()
    message = page.get_by_test_id("forgot-password-message")
    await expect(message).to_have_text(
        "If nobody@reset-co.example has an account, an email with a link is on its way. The link works for one hour."
    )
    await page.get_by_test_id("forgot-password-email").fill(email)
    await page.get_by_test_id("forgot-password-submit").click()
    await expect(message).to_have_text(
        f"If {email} has an account, an email with a link is on its way. The link works for one hour."
    )
    link = await emailed_link(server, email, "reset-password")
    assert server.mailbox.to("nobody@reset-co.example") == []

    # --- the link: a new password, then sign in with it (the old one no longer works)
    await page.goto(link)
    await expect(page.get_by_test_id("reset-password-form")).to_be_visible()
    new = "a brand new passphrase"
    await page.get_by_test_id("reset-password-password").fill(new)
    await page.get_by_test_id("reset-password-repeat").fill(new)
    await browser.screenshot(page, "desktop-reset-password")
    await page.get_by_test_id("reset-password-submit").click()
    await expect(page.get_by_test_id("login-message")).to_have_text(
        "Your password has been changed. Sign in with the new one."
    )
    await page.get_by_test_id("login-email").fill(email)
    await page.get_by_test_id("login-password").fill(old)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("login-message")).to_have_text("Wrong email or password.")
    await sign_in(page, email, new)

    # --- the signed-in user changes it: a wrong current password is said so, and nothing ends
    await page.get_by_test_id("account-button").click()
    await page.get_by_test_id("password-current").fill("not my password")
    await page.get_by_test_id("password-new").fill("the third passphrase")
    await page.get_by_test_id("password-repeat").fill("the third passphrase")
    await page.get_by_test_id("password-submit").click()
    password_message = page.get_by_test_id("password-message")
    await expect(password_message).to_contain_text("Could not change your password:")
    await expect(page.get_by_test_id("app")).to_be_visible()
    await page.get_by_test_id("password-current").fill(new)
    await page.get_by_test_id("password-submit").click()
    await expect(password_message).to_have_text("Your password has been changed. Your other sessions were signed out.")
    await page.get_by_test_id("sign-out").click()
    await sign_in(page, email, "the third passphrase")


async def test_the_audit_log_pages_newest_first(browser: Browser, team_server: TeamServer) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Audit Co")
    async with server.user(*admin) as api:
        for number in range(55):  # one contact.create entry each: more than a page of 50
            added = await api.post(
                "/api/v1/contacts", json={"name": f"Contact {number}", "email": f"c{number}@a.example"}
            )
            assert added.status_code == 201, added.text
    page, _ = await browser.open(server)
    await sign_in(page, *admin)
    await page.get_by_test_id("nav-admin").click()
    await page.get_by_test_id("admin-tab-audit").click()
    await page.get_by_test_id("audit-action").fill("contact.create")
    await page.get_by_test_id("audit-filter").click()
    rows = page.get_by_test_id("audit-list").locator("li")
    await expect(rows).to_have_count(50)
    await expect(rows.first.get_by_test_id("audit-entry-detail")).to_contain_text("Contact 54")
    await page.get_by_test_id("audit-more").click()
    await expect(rows).to_have_count(55)
    await expect(rows.last.get_by_test_id("audit-entry-detail")).to_contain_text("Contact 0")
    await expect(page.get_by_test_id("audit-more")).to_be_hidden()
    ids = [int(i.removeprefix("audit-")) for i in await rows.evaluate_all("rows => rows.map(r => r.dataset.testid)")]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 55, "newest first, none twice"


async def test_an_invitation_that_cannot_be_emailed_is_handed_over_then_sent_anew(
    browser: Browser, team_server: TeamServer
) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Bounce Co")
    bouncing = "lee@bounce-co.example"
    server.mailbox.refuse.add(bouncing)  # the SMTP server answers 550 for this address
    page, _ = await browser.open(server)
    await sign_in(page, *admin)
    await page.get_by_test_id("nav-admin").click()
    await page.get_by_test_id("invite-name").fill("Lee")
    await page.get_by_test_id("invite-email").fill(bouncing)
    await page.get_by_test_id("invite-submit").click()
    await expect(page.get_by_test_id("invite-message")).to_have_text(
        f"The email to {bouncing} could not be sent: give them the link below another way."
    )
    handed = await page.get_by_test_id("invite-link-value").text_content()
    assert handed and handed.startswith(f"{server.url}/#/accept-invite?token="), handed

    # the mail server takes it again: a new link is emailed, and the one handed over stops working
    server.mailbox.refuse.discard(bouncing)
    lee = page.get_by_test_id("users-list").locator(f'[data-email="{bouncing}"]')
    await lee.locator('[data-testid^="user-reinvite-"]').click()
    await expect(lee.locator('[data-testid^="user-message-"]')).to_have_text(
        f"Invitation sent to {bouncing}: the link in it works for 72 hours."
    )
    emailed = await emailed_link(server, bouncing, "accept-invite")
    assert emailed != handed
    old, _ = await browser.open(server, "phone")
    await old.goto(handed)
    await old.get_by_test_id("accept-invite-password").fill("lee's long passphrase")
    await old.get_by_test_id("accept-invite-repeat").fill("lee's long passphrase")
    await old.get_by_test_id("accept-invite-submit").click()
    await expect(old.get_by_test_id("accept-invite-message")).to_contain_text("This link cannot be used any more")
