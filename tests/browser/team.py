"""What the admin area's browser tests do besides driving the page: a tenant of their own,
members of a given role, the links the server emails, an insole, zooming the map in."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import parse_qs

import httpx

from shared.store.accounts import Role
from tests.browser.conftest import Server, TeamServer
from tests.helpers.xsole_client import XSoleTestClient

LINK = re.compile(r"https?://\S+?/#/(accept-invite|reset-password)\?token=[^\s\"'<>]+")


async def new_tenant(server: Server, name: str) -> tuple[str, str]:
    """A tenant created by the platform admin; its admin's (email, password)."""
    slug = re.sub(r"\W+", "-", name.lower()).strip("-")
    admin = (f"admin@{slug}.example", f"{slug} admin passphrase")
    async with server.user(*server.admin) as platform:
        created = await platform.post(
            "/api/v1/tenants", json={"name": name, "admin_email": admin[0], "admin_password": admin[1]}
        )
        assert created.status_code == 201, created.text
    return admin


async def add_member(server: TeamServer, admin: tuple[str, str], email: str, password: str, role: Role) -> None:
    """A user of the admin's tenant with that role, able to sign in with that password: invited
    through the API, the emailed link accepted through the API."""
    async with server.user(*admin) as api:
        invited = await api.post("/api/v1/users", json={"email": email, "name": email.split("@")[0], "role": role})
        assert invited.status_code == 201, invited.text
    link = await emailed_link(server, email, "accept-invite")  # <base>/#/accept-invite?token=...
    token = parse_qs(link.split("?", 1)[1])["token"][0]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as anyone:
        accepted = await anyone.post("/api/v1/auth/accept-invite", json={"token": token, "password": password})
        assert accepted.status_code == 200, accepted.text


async def emailed_link(server: TeamServer, address: str, kind: str, timeout: float = 15) -> str:
    """The newest `kind` link (accept-invite or reset-password) emailed to that address."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in reversed(server.mailbox.to(address)):
            body = message.get_body(preferencelist=("plain", "html"))
            text = body.get_content() if body is not None else str(message)
            for match in LINK.finditer(text):
                if match.group(1) == kind:
                    return match.group(0)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {kind} link emailed to {address}")


async def connected_insole(server: Server, imei: str, token_hex: str) -> XSoleTestClient:
    """An insole logged in with that token (LOGIN_ACK 0 checked)."""
    insole = await XSoleTestClient.connect("127.0.0.1", server.listener_port)
    answer = await insole.login(imei, bytes.fromhex(token_hex))
    assert answer.status == 0, f"LOGIN_ACK {answer.status}"
    return insole


async def walk_through(insole: XSoleTestClient, points: list[tuple[float, float]]) -> None:
    """One fix a second at each (lat, lon), each stored (ACK 0), as a worker walking: the server
    judges a device's newest fix every half second, so fixes sent at once would count as one."""
    for lat, lon in points:
        await insole.send(insole.position(ts=int(time.time()), lat_e7=round(lat * 1e7), lon_e7=round(lon * 1e7)))
        assert set((await insole.recv_acks(1)).values()) == {0}
        await asyncio.sleep(1)


async def open_commands(page: Any, imei: str) -> None:
    """A worker's commands, from its details on the map (once the map has stopped moving:
    a click lands where the user sees the button)."""
    from playwright.async_api import expect

    map_ = page.get_by_test_id("map")
    await expect(page.get_by_test_id(f"marker-{imei}")).to_be_visible()
    await expect(map_).to_have_attribute("data-idle", "true")
    await page.get_by_test_id(f"marker-{imei}").click()
    await expect(page.get_by_test_id("worker-details")).to_have_attribute("data-imei", imei)
    await expect(map_).to_have_attribute("data-idle", "true")  # the details may pan the map
    await page.get_by_test_id("details-commands").click()
    await expect(page.get_by_test_id("panel-commands")).to_be_visible()
    await expect(page.get_by_test_id("commands-worker")).to_have_value(imei)


async def zoom_in(page: Any, metres: int = 300) -> None:
    """Zooms the map in with its + button until its scale bar reads `metres` or less."""
    from playwright.async_api import expect

    scale = page.locator(".leaflet-control-scale-line")
    for _ in range(20):
        shown = (await scale.text_content() or "").strip()
        if shown.endswith(" m") and not shown.endswith(" km") and int(shown.split()[0]) <= metres:
            return
        await page.locator(".leaflet-control-zoom-in").click()
        await expect(scale).not_to_have_text(shown)  # each zoom level reads differently
        await expect(page.get_by_test_id("map")).to_have_attribute("data-idle", "true")
    raise AssertionError(f"the scale never read {metres} m or less")
