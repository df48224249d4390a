"""/api/v1/docs works offline: Swagger UI's files come from solewatch itself, not a CDN."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Browser, Server

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_interactive_api_docs_render_with_nothing_from_outside(browser: Browser, server: Server) -> None:
    from playwright.async_api import expect

    page, traffic = await browser.open(server)  # every off-machine request is refused, as on an offline site
    await page.goto(server.url + "/api/v1/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("solewatch API")
    await expect(page.locator(".opblock-summary-path").first).to_be_visible()  # the operations are listed
    assert traffic.off_machine == []
