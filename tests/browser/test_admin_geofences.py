"""An admin draws a geofence on the map, changes it with its handles, and a worker
crossing it raises an alert: in headless Chromium, on a desk and on a phone.

Each form factor has a tenant of its own on the team server, whose insole sends no
position before the geofence is saved: detection then sees the saved shape at once.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import Browser, TeamServer, sign_in
from tests.browser.team import connected_insole, new_tenant, walk_through, zoom_in

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

WORKERS = {"desktop": ("356307042441104", "Gate keeper Dana"), "phone": ("356307042441112", "Gate keeper Eli")}
SQUARE = [(-110, -90), (110, -90), (110, 90), (-110, 90)]  # px from the map's centre: about ±250 m at that zoom


@pytest.mark.parametrize("form", ["desktop", "phone"])
async def test_an_admin_draws_a_geofence_and_a_worker_leaving_it_raises_an_alert(
    form: str, browser: Browser, team_server: TeamServer
) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, f"Fenced site {form}")
    imei, name = WORKERS[form]
    async with server.user(*admin) as api:
        registered = await api.post("/api/v1/devices", json={"imei": imei, "name": name})
        assert registered.status_code == 201, registered.text
    page, traffic = await browser.open(server, form)
    await sign_in(page, *admin)
    await zoom_in(page)

    # --- draw: a name, then four corners clicked on the map, then Finish
    await page.get_by_test_id("nav-admin").click()
    await page.get_by_test_id("admin-tab-geofences").click()
    await page.get_by_test_id("geofence-new").click()
    await page.get_by_test_id("geofence-name").fill("Loading yard")
    await page.get_by_test_id("geofence-draw").click()
    toolbar = page.get_by_test_id("draw-toolbar")
    await expect(toolbar).to_be_visible()  # on a phone the map is shown for drawing
    await expect(page.get_by_test_id("draw-hint")).to_contain_text("0 of at least 3")
    box = await page.get_by_test_id("map").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for dx, dy in SQUARE:
        await page.mouse.click(centre[0] + dx, centre[1] + dy)
    await expect(page.get_by_test_id("draw-hint")).to_contain_text("4 corners")
    await browser.screenshot(page, f"{form}-admin-geofence-drawing")
    await page.get_by_test_id("draw-finish").click()
    corners = page.get_by_test_id("geofence-corners")
    await expect(corners).to_be_visible()  # back to the form, which shows what was drawn
    drawn = [line.split(", ") for line in (await corners.input_value()).splitlines()]
    assert len(drawn) == 4

    # --- edit: drag the first corner 60 px up and left; the form follows
    if form == "phone":
        await page.get_by_test_id("nav-map").click()
    handle = page.get_by_test_id("edit-handle-corner").first
    at = await handle.bounding_box()
    grab = (at["x"] + at["width"] / 2, at["y"] + at["height"] / 2)
    await page.mouse.move(*grab)
    await page.mouse.down()
    await page.mouse.move(grab[0] - 60, grab[1] - 60, steps=6)
    await page.mouse.up()
    await expect(corners).not_to_have_value("\n".join(", ".join(c) for c in drawn))
    moved = [[float(v) for v in line.split(", ")] for line in (await corners.input_value()).splitlines()]
    assert moved[1:] == [[float(v) for v in c] for c in drawn[1:]], "only the dragged corner moved"
    assert moved[0][0] > float(drawn[0][0]) and moved[0][1] < float(drawn[0][1]), "dragged north-west"
    if form == "phone":
        await page.get_by_test_id("edit-done").click()
    await page.get_by_test_id("geofence-save").click()
    await expect(page.get_by_test_id("geofences-message")).to_have_text("Loading yard saved.")

    # --- what the server stored is what was drawn; the map shows it
    async with server.user(*admin) as api:
        fences = (await api.get("/api/v1/geofences")).json()["items"]
    assert [(f["name"], f["geometry"]["type"], f["alert_on"], f["devices"]) for f in fences] == [
        ("Loading yard", "Polygon", ["exit"], [])
    ]
    ring = fences[0]["geometry"]["coordinates"][0]
    assert [[lat, lon] for lon, lat in ring[:-1]] == moved and ring[0] == ring[-1]
    if form == "phone":
        await page.get_by_test_id("nav-map").click()
    await expect(page.get_by_test_id(f"geofence-{fences[0]['id']}")).to_be_visible()
    await expect(page.locator(".geofence-label", has_text="Loading yard")).to_have_count(1)

    # --- the worker stands in the yard, then walks out of it: a geofence_exit alert
    lat = sum(c[0] for c in moved) / 4
    lon = sum(c[1] for c in moved) / 4
    insole = await connected_insole(server, imei, registered.json()["token"])
    await walk_through(insole, [(lat, lon), (lat, lon), (lat + 0.01, lon), (lat + 0.01, lon), (lat + 0.01, lon)])
    await page.get_by_test_id("nav-alerts").click()
    alert = page.get_by_test_id("alerts-open").locator(f'[data-imei="{imei}"][data-kind="geofence_exit"]')
    await expect(alert).to_have_count(1)
    await expect(alert.get_by_test_id("alert-worker")).to_have_text(name)
    await expect(page.get_by_test_id(f"marker-{imei}")).to_have_attribute("data-state", "alert")

    await insole.close()
    await page.context.close()
    assert traffic.off_machine == []


async def test_an_admin_retypes_a_geofence_draws_a_circle_and_deletes_one(
    browser: Browser, team_server: TeamServer
) -> None:
    from playwright.async_api import expect

    server = team_server
    admin = await new_tenant(server, "Fence keeper")
    square = [[7.05, 43.61], [7.06, 43.61], [7.06, 43.62], [7.05, 43.62], [7.05, 43.61]]
    async with server.user(*admin) as api:
        created = await api.post(
            "/api/v1/geofences",
            json={"name": "Quarry", "geometry": {"type": "Polygon", "coordinates": [square]}, "alert_on": ["enter"]},
        )
        assert created.status_code == 201, created.text
    old_id = created.json()["id"]
    page, traffic = await browser.open(server)
    await sign_in(page, *admin)
    await page.get_by_test_id("nav-admin").click()
    await page.get_by_test_id("admin-tab-geofences").click()

    # --- changed with the keyboard only: corners typed in the form move the shape on the map
    await page.get_by_test_id(f"geofence-edit-{old_id}").click()
    await expect(page.get_by_test_id("edit-handle-corner")).to_have_count(4)  # the stored shape, editable
    await expect(page.get_by_test_id(f"geofence-{old_id}")).to_have_count(0)  # shown once, as the edited one
    corners = page.get_by_test_id("geofence-corners")
    await expect(corners).to_have_value("43.61, 7.05\n43.61, 7.06\n43.62, 7.06\n43.62, 7.05")
    await corners.fill("43.61, 7.05\n43.61, 7.06\nnot a corner")
    await corners.blur()
    await expect(page.get_by_test_id("geofence-form-message")).to_contain_text('line 3 is not "latitude, longitude"')
    await corners.fill("43.61, 7.05\n43.61, 7.07\n43.63, 7.07\n43.63, 7.05\n43.62, 7.04")
    await corners.blur()
    await expect(page.get_by_test_id("edit-handle-corner")).to_have_count(5)
    await page.get_by_test_id("geofence-save").click()
    await expect(page.get_by_test_id("geofences-message")).to_have_text("Quarry saved.")
    async with server.user(*admin) as api:
        fences = (await api.get("/api/v1/geofences")).json()["items"]
    assert len(fences) == 1 and fences[0]["id"] != old_id  # added anew, then the old one removed
    assert fences[0]["name"] == "Quarry" and fences[0]["alert_on"] == ["enter"]
    assert fences[0]["geometry"]["coordinates"] == [
        [[7.05, 43.61], [7.07, 43.61], [7.07, 43.63], [7.05, 43.63], [7.04, 43.62], [7.05, 43.61]]
    ]

    # --- a circle: its centre clicked, then a point 100 px east on its edge
    await page.get_by_test_id("geofence-new").click()
    await page.get_by_test_id("geofence-name").fill("Crane")
    await page.get_by_test_id("geofence-shape-circle").check()
    await page.get_by_test_id("geofence-draw").click()
    box = await page.get_by_test_id("map").bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.click(*centre)
    await expect(page.get_by_test_id("draw-hint")).to_have_text("Click a point on its edge.")
    await page.mouse.click(centre[0] + 100, centre[1])
    radius = float(await page.get_by_test_id("geofence-radius").input_value())
    scale = page.locator(".leaflet-control-scale-line")  # its width in px stands for its text in metres
    metres = float((await scale.text_content() or "").split()[0]) * (1000 if "km" in await scale.inner_text() else 1)
    per_px = metres / (await scale.bounding_box())["width"]
    assert abs(radius - 100 * per_px) < 0.05 * radius, (radius, per_px)
    await page.get_by_test_id("geofence-on-enter").check()
    await page.get_by_test_id("geofence-save").click()
    await expect(page.get_by_test_id("geofences-message")).to_have_text("Crane saved.")
    async with server.user(*admin) as api:
        crane = next(f for f in (await api.get("/api/v1/geofences")).json()["items"] if f["name"] == "Crane")
    assert crane["geometry"]["type"] == "Circle" and crane["geometry"]["radius_m"] == round(radius, 1)
    assert crane["alert_on"] == ["exit", "enter"]
    await expect(page.get_by_test_id(f"geofence-{crane['id']}")).to_be_visible()

    # --- deleted after a confirmation
    await page.get_by_test_id(f"geofence-delete-{crane['id']}").click()
    await page.get_by_test_id("confirm-delete-geofence-yes").click()
    await expect(page.get_by_test_id(f"geofence-row-{crane['id']}")).to_have_count(0)
    await expect(page.get_by_test_id(f"geofence-{crane['id']}")).to_have_count(0)
    async with server.user(*admin) as api:
        assert [f["name"] for f in (await api.get("/api/v1/geofences")).json()["items"]] == ["Quarry"]
    assert traffic.off_machine == []
