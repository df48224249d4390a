"""The dashboard as an installable app, in Debian's chromium: the service worker registers at the
root scope, the manifest is linked and valid, the shell opens offline, and a supervisor sees the
"Notify me on this device" toggle."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.conftest import Browser, Server, sign_in

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_service_worker_registers_and_the_shell_opens_offline(browser: Browser, server: Server) -> None:
    from playwright.async_api import expect

    page, traffic = await browser.open(server)
    registration: dict[str, Any] = await page.evaluate("""async () => {
        const registration = await navigator.serviceWorker.ready;
        const worker = registration.active;  // ready once activating: wait for the end of its activate step
        if (worker.state !== "activated") {
            await new Promise((done) => worker.addEventListener(
                "statechange", () => worker.state === "activated" && done()));
        }
        return {scope: registration.scope, script: registration.active.scriptURL, state: registration.active.state};
    }""")
    assert registration == {"scope": f"{server.url}/", "script": f"{server.url}/sw.js", "state": "activated"}

    manifest_url = await page.evaluate("document.querySelector('link[rel=manifest]').href")
    async with httpx.AsyncClient() as client:
        answer = await client.get(manifest_url)
        assert answer.headers["content-type"] == "application/manifest+json"
        manifest = answer.json()
        assert manifest["display"] == "standalone" and manifest["start_url"] == "./" and manifest["name"]
        sizes = {icon["sizes"] for icon in manifest["icons"] if icon["type"] == "image/png"}
        assert {"192x192", "512x512"} <= sizes
        for icon in manifest["icons"]:
            got = await client.get(httpx.URL(manifest_url).join(icon["src"]))
            assert got.status_code == 200 and got.headers["content-type"] == icon["type"], icon

    # Once the worker controls the page, the app shell comes from its cache when the network is gone.
    await page.reload()
    assert await page.evaluate("Boolean(navigator.serviceWorker.controller)")
    await page.context.set_offline(True)
    await page.reload()
    await expect(page.get_by_test_id("login-screen")).to_be_visible()
    await page.context.set_offline(False)
    assert traffic.off_machine == []


async def test_a_supervisor_can_turn_notifications_on_for_this_device(browser: Browser, server: Server) -> None:
    from playwright.async_api import expect

    page, _ = await browser.open(server)
    await sign_in(page, *server.admin)
    toggle = page.get_by_test_id("push-toggle")
    await expect(toggle).to_be_visible()
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await expect(toggle).to_have_text("Notify me on this device")
