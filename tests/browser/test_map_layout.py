"""How the dashboard lays out what it shows: names in order, labels that neither overlap nor
run off the map, a popup whose close button stays reachable, a scale clear of the attribution.

The workers here belong to a tenant of their own, so the simulated ones and the other tests'
workers do not move the map under them.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import Browser, Server, Traffic, sign_in
from tests.browser.test_dashboard import register_insole

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

CREW_ADMIN = ("lead@crew.example", "crew secret 456")
CENTRE = (450000000, 60000000)  # 1e-7 degrees
# Three workers a metre or two apart (their names would pile up) and one far to the north-east:
# the map fits all four, so that one lands near the top-right corner, by the controls.
CREW = {  # imei: (name, offset north, offset east in 1e-7 degrees)
    "356307042500016": ("Crew 1", 0, 0),
    "356307042500024": ("Crew 2", 0, 200),
    "356307042500032": ("Crew 10", 200, 0),
    "356307042500040": ("Crew 11", 40000, 121000),
}
FAR = "356307042500040"

# Boxes (relative to the map) of the labels shown, the markers and the map's controls, once the
# labels are placed (the frame after the map stopped moving).
GEOMETRY = """async () => {
    await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
    const map = document.querySelector('[data-testid="map"]');
    const origin = map.getBoundingClientRect();
    const box = (el) => { const r = el.getBoundingClientRect();
        return { left: r.left - origin.left, top: r.top - origin.top,
                 right: r.right - origin.left, bottom: r.bottom - origin.top }; };
    const shown = (el) => getComputedStyle(el).display !== "none" && el.getBoundingClientRect().width > 0;
    return {
        width: origin.width, height: origin.height,
        labels: [...map.querySelectorAll(".worker-label")].filter(shown)
            .map((el) => ({ name: el.textContent, ...box(el) })),
        markers: [...map.querySelectorAll(".worker-marker")]
            .map((el) => ({ imei: el.dataset.testid.slice(7), ...box(el) })),
        controls: [...map.querySelectorAll(".leaflet-control")].filter(shown)
            .map((el) => ({ name: el.className, ...box(el) })),
    };
}"""


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """The two boxes share some area (touching edges do not count)."""
    return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]


_crew_placed: list[str] = []


async def crew_signed_in(browser: Browser, server: Server) -> tuple[Any, Traffic]:
    """The crew's supervisor on a desk, the crew's four markers on the map.

    The first call creates the crew's tenant and sends each worker's position; the insoles then
    hang up, so every worker is offline (one state: the list orders them by name alone).
    """
    from playwright.async_api import expect

    if not _crew_placed:
        async with server.user(*server.admin) as platform_admin:
            created = await platform_admin.post(
                "/api/v1/tenants",
                json={"name": "Crew Co", "admin_email": CREW_ADMIN[0], "admin_password": CREW_ADMIN[1]},
            )
            assert created.status_code == 201, created.text
        for imei, (name, north, east) in CREW.items():
            insole = await register_insole(server, imei, name, CREW_ADMIN)
            await insole.send(insole.position(lat_e7=CENTRE[0] + north, lon_e7=CENTRE[1] + east, battery=80))
            assert set((await insole.recv_acks(1)).values()) == {0}
            await insole.close()
            _crew_placed.append(imei)
    page, traffic = await browser.open(server)
    await sign_in(page, *CREW_ADMIN)
    for imei in CREW:
        await expect(page.get_by_test_id(f"marker-{imei}")).to_have_attribute("data-state", "offline")
    await expect(page.get_by_test_id("map")).to_have_attribute("data-idle", "true")
    return page, traffic


async def test_workers_are_listed_in_natural_order_of_their_names(browser: Browser, server: Server) -> None:
    from playwright.async_api import expect

    page, traffic = await crew_signed_in(browser, server)
    # 1, 2, 10, 11: not 1, 10, 11, 2 as text would sort them; in the history's choice of worker too
    in_order = ["Crew 1", "Crew 2", "Crew 10", "Crew 11"]
    await expect(page.get_by_test_id("worker-list").get_by_test_id("worker-name")).to_have_text(in_order)
    await page.get_by_test_id("nav-history").click()
    options = await page.get_by_test_id("history-worker").locator("option").all_text_contents()
    assert [option.split(" (")[0] for option in options] == in_order
    assert traffic.off_machine == []


async def test_names_on_the_map_neither_overlap_nor_run_off_it(browser: Browser, server: Server) -> None:
    from playwright.async_api import expect

    page, traffic = await crew_signed_in(browser, server)
    await expect(page.get_by_test_id("tiles-unavailable")).to_be_visible()
    await expect(page.get_by_test_id("map")).to_have_class(re.compile(r"\bshow-labels\b"))
    seen = await page.evaluate(GEOMETRY)
    labels = seen["labels"]
    assert {label["name"] for label in labels} >= {"Crew 11"}, f"the lone worker is named: {seen}"
    assert len(labels) >= 2, f"names show once zoomed in: {seen}"
    for n, label in enumerate(labels):
        assert (
            label["left"] >= 0
            and label["top"] >= 0
            and label["right"] <= seen["width"]
            and label["bottom"] <= seen["height"]
        ), f"{label['name']} is cut by the map's edge: {seen}"
        for other in labels[n + 1 :]:
            assert not overlap(label, other), f"{label['name']} and {other['name']} overlap: {seen}"
        for control in seen["controls"]:
            assert not overlap(label, control), f"{label['name']} is under {control['name']}: {seen}"
        own = next(imei for imei, crew in CREW.items() if crew[0] == label["name"])
        for marker in seen["markers"]:
            assert marker["imei"] == own or not overlap(label, marker), f"{label['name']} covers a marker: {seen}"
    # a name left out shows while the pointer is on its marker
    hidden = next(imei for imei, crew in CREW.items() if crew[0] not in {label["name"] for label in labels})
    await expect(page.get_by_test_id(f"marker-label-{hidden}")).to_be_hidden()
    await page.get_by_test_id(f"marker-{hidden}").dispatch_event("mouseover")
    await expect(page.get_by_test_id(f"marker-label-{hidden}")).to_be_visible()
    await page.get_by_test_id(f"marker-{hidden}").dispatch_event("mouseout")
    await expect(page.get_by_test_id(f"marker-label-{hidden}")).to_be_hidden()
    assert traffic.off_machine == []


async def test_the_tiles_note_leaves_the_popups_close_button_free(browser: Browser, server: Server) -> None:
    from playwright.async_api import expect

    page, traffic = await crew_signed_in(browser, server)
    note = page.get_by_test_id("tiles-unavailable")
    await expect(note).to_be_visible()
    # the details of the worker by the top-right corner, where the note is
    await page.get_by_test_id(f"marker-{FAR}").click()
    await expect(page.get_by_test_id("worker-details")).to_have_attribute("data-imei", FAR)
    await expect(page.get_by_test_id("map")).to_have_attribute("data-idle", "true")
    close = page.locator(".leaflet-popup-close-button")
    close_box, note_box = await close.bounding_box(), await note.bounding_box()
    assert close_box is not None and note_box is not None
    assert not overlap(xywh(close_box), xywh(note_box)), (
        f"the tiles note {note_box} covers the close button {close_box}"
    )
    await close.click()
    await expect(page.get_by_test_id("worker-details")).to_have_count(0)
    assert traffic.off_machine == []


def xywh(box: dict[str, float]) -> dict[str, float]:
    """A Playwright bounding box as left, top, right, bottom."""
    return {"left": box["x"], "top": box["y"], "right": box["x"] + box["width"], "bottom": box["y"] + box["height"]}


async def test_on_a_phone_the_scale_keeps_clear_of_the_attribution(browser: Browser, server: Server) -> None:
    from playwright.async_api import Route, expect

    page, traffic = await browser.open(server, "phone")

    # OpenStreetMap's credit, as the server sends it when its tiles are used (they stay unreachable here).
    async def credit_openstreetmap(route: Route) -> None:
        answer = await route.fetch()
        config = await answer.json()
        await route.fulfill(response=answer, json={**config, "tile_attribution": "© OpenStreetMap contributors"})

    await page.route("**/dashboard-config.json", credit_openstreetmap)
    await page.reload()
    await sign_in(page, *server.admin)
    await page.get_by_test_id("nav-map").click()
    attribution = page.locator(".leaflet-control-attribution")
    await expect(attribution).to_contain_text("OpenStreetMap")
    await expect(page.get_by_test_id("map")).to_have_attribute("data-idle", "true")
    scale = await page.locator(".leaflet-control-scale").bounding_box()
    credit = await attribution.bounding_box()
    readout = await page.get_by_test_id("map-coords").bounding_box()
    assert scale is not None and credit is not None and readout is not None
    # above the attribution line, with room between them; and beside the coordinates readout
    assert scale["y"] + scale["height"] + 2 <= credit["y"], f"the scale {scale} touches the attribution {credit}"
    assert scale["x"] + scale["width"] + 2 <= readout["x"], f"the scale {scale} touches the coordinates {readout}"
    assert traffic.off_machine == []
