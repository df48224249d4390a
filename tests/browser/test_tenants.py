"""Two tenants side by side: nothing of one reaches the other's dashboard.

Both supervisors have the page open while the other tenant's insole walks and
raises an SOS. Every HTTP body and WebSocket frame each page received, and its
DOM, is searched for the other tenant's IMEIs, names and coordinates.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import Browser, Server, sign_in
from tests.browser.test_dashboard import register_insole, walk
from tests.helpers.xsole_client import XSoleTestClient

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

OTHER_ADMIN = ("boss@other.example", "other secret 123")
IMEI_A, NAME_A = "356307042441039", "Acme tester Carla"
IMEI_B, NAME_B = "356307042441047", "Othello of Other Co"
WHERE_A = (436140000, 70540000)
WHERE_B = (488566000, 23522000)  # far from the simulated sites: its digits would stand out


async def test_each_tenant_sees_only_its_own_workers_and_alerts(browser: Browser, server: Server) -> None:
    from playwright.async_api import expect

    async with server.user(*server.admin) as platform_admin:
        created = await platform_admin.post(
            "/api/v1/tenants",
            json={"name": "Other Co", "admin_email": OTHER_ADMIN[0], "admin_password": OTHER_ADMIN[1]},
        )
        assert created.status_code == 201, created.text
    insole_a = await register_insole(server, IMEI_A, NAME_A)
    async with server.user(*OTHER_ADMIN) as other_admin:
        registered = await other_admin.post("/api/v1/devices", json={"imei": IMEI_B, "name": NAME_B})
        assert registered.status_code == 201, registered.text
    insole_b = await XSoleTestClient.connect("127.0.0.1", server.listener_port)
    assert (await insole_b.login(IMEI_B, bytes.fromhex(registered.json()["token"]))).status == 0
    await walk(insole_a, *WHERE_A, steps=2)
    await walk(insole_b, *WHERE_B, steps=2)

    page_a, traffic_a = await browser.open(server)
    await sign_in(page_a, *server.admin)
    page_b, traffic_b = await browser.open(server, "phone")
    await sign_in(page_b, *OTHER_ADMIN)
    await expect(page_a.get_by_test_id(f"marker-{IMEI_A}")).to_be_visible()
    await expect(page_b.get_by_test_id(f"marker-{IMEI_B}")).to_be_visible()
    await expect(page_b.get_by_test_id("tenant-name")).to_have_text("Other Co")

    # While both watch: B's worker walks and raises an SOS, then A's does. A's SOS showing on
    # page A means B's earlier events, had they leaked, would have arrived before it.
    await walk(insole_b, WHERE_B[0] + 5000, WHERE_B[1], steps=2)
    await insole_b.send(insole_b.alarm(kind=1, lat_e7=WHERE_B[0], lon_e7=WHERE_B[1]))
    assert (await insole_b.recv_acks(1)) == {insole_b._seq: 0}
    await expect(page_b.get_by_test_id("sos-banner").locator(f'[data-imei="{IMEI_B}"]')).to_be_visible()
    await walk(insole_a, WHERE_A[0] + 5000, WHERE_A[1], steps=1)
    await insole_a.send(insole_a.alarm(kind=1, lat_e7=WHERE_A[0], lon_e7=WHERE_A[1]))
    assert (await insole_a.recv_acks(1)) == {insole_a._seq: 0}
    await expect(page_a.get_by_test_id("sos-banner").locator(f'[data-imei="{IMEI_A}"]')).to_be_visible()
    await expect(page_b.get_by_test_id("sos-banner").locator(f'[data-imei="{IMEI_A}"]')).to_have_count(0)
    await page_b.get_by_test_id("nav-workers").click()
    await expect(page_b.locator('[data-testid^="worker-row-"]')).to_have_count(1)
    await browser.screenshot(page_b, "phone-other-tenant")

    # Page A: the simulated workers and its own, never B's.
    await expect(page_a.get_by_test_id(f"marker-{server.simulated[0]}")).to_be_visible()
    seen_a = await traffic_a.settled() + await page_a.content()
    for secret in (IMEI_B, NAME_B, "Other Co", OTHER_ADMIN[0], '"lat":48.8', '"lon":2.35'):
        assert secret not in seen_a, f"page A received {secret!r} of the other tenant"
    # the search would find a leak: it finds A's own data
    assert IMEI_A in seen_a and NAME_A in seen_a and '"lat":43.6' in seen_a

    # Page B: its one worker, none of A's.
    seen_b = await traffic_b.settled() + await page_b.content()
    for secret in (IMEI_A, NAME_A, *server.simulated, "Simulated worker", server.admin[0], '"lat":43.6', '"lon":7.0'):
        assert secret not in seen_b, f"page B received {secret!r} of the other tenant"
    assert IMEI_B in seen_b and NAME_B in seen_b and '"lat":48.8' in seen_b

    assert traffic_a.off_machine == [] and traffic_b.off_machine == []
    await insole_a.close()
    await insole_b.close()
