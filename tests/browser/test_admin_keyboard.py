"""The admin area with a keyboard and a screen reader: the sections are tabs moved with the
arrow keys, every field has a name, and a confirmation opens on Cancel and Escape keeps
everything as it was."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Browser, TeamServer, sign_in
from tests.browser.team import new_tenant

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

SECTIONS = ["users", "devices", "contacts", "escalation", "geofences", "data", "audit"]
# Visible form controls without an accessible name (a <label>, aria-label or aria-labelledby).
UNNAMED = """els => els.filter(e => e.offsetParent !== null && !e.labels?.length && !e.getAttribute("aria-label")
    && !e.getAttribute("aria-labelledby")).map(e => e.outerHTML.slice(0, 120))"""


async def test_the_admin_area_works_with_a_keyboard_and_names_every_field(
    browser: Browser, team_server: TeamServer
) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Keys Co")
    async with server.user(*admin) as api:
        added = await api.post("/api/v1/contacts", json={"name": "Desk", "email": "desk@keys-co.example"})
        assert added.status_code == 201, added.text
    page, _ = await browser.open(server)
    await sign_in(page, *admin)
    await page.get_by_test_id("nav-admin").click()

    # --- the sections' tabs: arrow keys move the selection and show each section
    await page.get_by_test_id("admin-tab-users").focus()
    for number, name in enumerate(SECTIONS):
        if number:
            await page.keyboard.press("ArrowRight")
        tab = page.get_by_test_id(f"admin-tab-{name}")
        await expect(tab).to_be_focused()
        await expect(tab).to_have_attribute("aria-selected", "true")
        section = page.get_by_test_id(f"admin-section-{name}")
        await expect(section).to_be_visible()
        if name == "escalation":  # its fields come with its steps
            await page.get_by_test_id("escalation-add").click()
            await tab.focus()
        if name != "geofences":  # its form opens with "New geofence" (below)
            await expect(section.locator("input, select, textarea").first).to_be_visible()
        assert await section.locator("input, select, textarea").evaluate_all(UNNAMED) == [], name
    await page.keyboard.press("ArrowRight")  # past the last: back to the first
    await expect(page.get_by_test_id("admin-tab-users")).to_have_attribute("aria-selected", "true")

    # --- a confirmation: Enter opens it with Cancel focused; Escape closes it, nothing removed
    await page.get_by_test_id("admin-tab-contacts").click()
    remove = page.get_by_test_id(f"contact-delete-{added.json()['id']}")
    await remove.focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_test_id("confirm-delete-contact")
    await expect(dialog).to_be_visible()
    await expect(page.get_by_test_id("confirm-delete-contact-no")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(dialog).to_have_count(0)
    async with server.user(*admin) as api:
        assert [c["name"] for c in (await api.get("/api/v1/contacts")).json()["items"]] == ["Desk"]

    # --- the new geofence form and the account's password form name their fields too
    await page.get_by_test_id("admin-tab-geofences").click()
    await page.get_by_test_id("geofence-new").click()
    form = page.get_by_test_id("geofence-form")
    await expect(form).to_be_visible()
    assert await form.locator("input, select, textarea").evaluate_all(UNNAMED) == []
    await page.get_by_test_id("account-button").click()
    password = page.get_by_test_id("password-form")
    await expect(password).to_be_visible()
    assert await password.locator("input").evaluate_all(UNNAMED) == []
