"""What the supervisor sees when things go wrong: the server unavailable, the
session over, an access token gone stale, no map tiles."""

from __future__ import annotations

import contextlib
import re

import pytest

from tests.browser.conftest import Browser, Server, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]


async def test_a_503_is_explained_and_retried_until_the_server_answers(browser: Browser, server: Server) -> None:
    from playwright.async_api import Route, expect

    page, _ = await browser.open(server)
    refused: list[str] = []

    async def unavailable_twice(route: Route) -> None:
        if len(refused) < 2:
            refused.append(route.request.url)
            await route.fulfill(
                status=503,
                headers={"Retry-After": "1"},
                content_type="application/json",
                body='{"detail": "storage is unavailable, retry later"}',
            )
        else:
            await route.fallback()

    await page.route(re.compile(r"/api/v1/devices\?"), unavailable_twice)
    await page.get_by_test_id("login-email").fill(server.admin[0])
    await page.get_by_test_id("login-password").fill(server.admin[1])
    await page.get_by_test_id("login-submit").click()
    notice = page.get_by_test_id("notice")
    await expect(notice).to_have_text(re.compile(r"The server is unavailable \(503\)\. Retrying (in \d s|now)…"))
    # Retried by itself after Retry-After: the workers show, the notice goes.
    await expect(page.get_by_test_id(f"worker-row-{server.simulated[0]}")).to_be_visible()
    await expect(notice).to_be_hidden()
    assert len(refused) == 2


async def test_an_ended_session_sends_the_user_back_to_sign_in_saying_why(browser: Browser, server: Server) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
    from playwright.async_api import expect

    page, _ = await browser.open(server)
    await sign_in(page, *server.admin)
    # A stale access token is refreshed without the user noticing, across a reload.
    await page.evaluate("""() => {
        const tokens = JSON.parse(localStorage.getItem("solewatch.session"));
        localStorage.setItem("solewatch.session", JSON.stringify({...tokens, access_token: "stale.token.value"}));
    }""")
    await page.reload()
    await expect(page.get_by_test_id("live-status")).to_have_text("Live")
    await expect(page.get_by_test_id(f"worker-row-{server.simulated[0]}")).to_be_visible()
    assert (
        await page.evaluate('JSON.parse(localStorage.getItem("solewatch.session")).access_token') != "stale.token.value"
    )

    # The session is revoked elsewhere (here: logged out through the API with the page's own token).
    token = await page.evaluate('JSON.parse(localStorage.getItem("solewatch.session")).access_token')
    async with server.user(*server.admin) as client:
        logout = await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert logout.status_code == 204
    # The page hears of it at its next request, or sooner on its own: its live connection is cut and
    # cannot refresh (on a busy machine that often comes first). Either way it ends at the sign-in.
    with contextlib.suppress(PlaywrightTimeout):
        await page.get_by_test_id("nav-history").click(timeout=3000)
        await page.get_by_test_id("history-worker").select_option(server.simulated[0], timeout=3000)
        await page.get_by_test_id("history-show").click(timeout=3000)
    await expect(page.get_by_test_id("login-screen")).to_be_visible()
    await expect(page.get_by_test_id("login-message")).to_have_text("Your session has expired. Please sign in again.")
    await expect(page.get_by_test_id("app")).to_be_hidden()
    # Signing in again works from there.
    await sign_in(page, *server.admin)
    await expect(page.get_by_test_id(f"worker-row-{server.simulated[0]}")).to_be_visible()


async def test_without_tiles_the_map_keeps_a_scale_coordinates_and_geofences(browser: Browser, server: Server) -> None:
    from playwright.async_api import expect

    async with server.user(*server.admin) as admin:
        circle = await admin.post(
            "/api/v1/geofences",
            json={"name": "Depot", "geometry": {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 120}},
        )
        assert circle.status_code == 201, circle.text
        polygon = await admin.post(
            "/api/v1/geofences",
            json={
                "name": "Quarry pit",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [
                        [[7.050, 43.618], [7.054, 43.618], [7.054, 43.621], [7.050, 43.621], [7.050, 43.618]]
                    ],
                },
            },
        )
        assert polygon.status_code == 201, polygon.text
    page, traffic = await browser.open(server)
    await sign_in(page, *server.admin)

    await expect(page.get_by_test_id("tiles-unavailable")).to_have_text("Map tiles unavailable: plain background")
    await expect(page.locator(".leaflet-control-scale-line")).to_have_text(re.compile(r"^\d+ k?m$"))
    coordinates = page.get_by_test_id("map-coords")
    await expect(coordinates).to_have_text(re.compile(r"^-?\d+\.\d{5}, -?\d+\.\d{5}$"))
    box = await page.get_by_test_id("map").bounding_box()
    await page.mouse.move(box["x"] + 50, box["y"] + box["height"] - 60)
    bottom_left = await coordinates.text_content()
    await page.mouse.move(box["x"] + box["width"] - 80, box["y"] + 60)
    await expect(coordinates).not_to_have_text(bottom_left)  # the readout follows the pointer

    for fence in (circle.json(), polygon.json()):
        await expect(page.get_by_test_id(f"geofence-{fence['id']}")).to_be_attached()
    await expect(page.locator(".geofence-label", has_text="Depot")).to_have_count(1)
    await expect(page.locator(".geofence-label", has_text="Quarry pit")).to_have_count(1)
    await browser.screenshot(page, "desktop-no-tiles-geofences")
    assert traffic.off_machine == []
