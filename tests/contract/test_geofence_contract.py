"""The storage port's geofence half (shared/store/geofences.py), for every adapter in STORE_FACTORIES."""

from __future__ import annotations

import time
from typing import Any, cast

from shared.store import Store
from shared.store.geofences import Geofence, GeofenceStore, geofences_of_device

CIRCLE = {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 250.0}
POLYGON = {
    "type": "Polygon",
    "coordinates": [
        [[7.05, 43.61], [7.06, 43.61], [7.06, 43.62], [7.05, 43.62], [7.05, 43.61]],
        [[7.054, 43.614], [7.056, 43.614], [7.056, 43.616], [7.054, 43.614]],
    ],
}
IMEIS = ("356307042441013", "356307042441021")


def geofences(store: Store) -> GeofenceStore:
    return cast(GeofenceStore, store)


async def add(
    store: Store,
    tenant_id: int,
    *,
    name: str = "depot",
    shape: dict[str, Any] = CIRCLE,
    devices: tuple[str, ...] = (),
    alert_on: tuple[str, ...] = ("exit",),
) -> Geofence:
    return await geofences(store).add_geofence(
        tenant_id=tenant_id, name=name, shape=shape, devices=devices, alert_on=alert_on
    )


async def test_a_geofence_reads_back_as_stored(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    before = time.time()
    circle = await add(store, tenant)
    polygon = await add(store, tenant, name="quarry", shape=POLYGON, devices=IMEIS, alert_on=("enter", "exit"))

    assert circle.id != polygon.id and before - 1 <= circle.created_at <= time.time() + 1
    assert (polygon.tenant_id, polygon.name, polygon.shape, polygon.devices, polygon.alert_on) == (
        tenant,
        "quarry",
        POLYGON,
        IMEIS,
        ("enter", "exit"),
    )
    assert await geofences(store).geofence(tenant, polygon.id) == polygon
    assert await geofences(store).geofences(tenant) == [circle, polygon]  # oldest first


async def test_geofences_belong_to_their_tenant(store: Store) -> None:
    acme, other = await store.ensure_tenant("acme"), await store.ensure_tenant("other")
    mine = await add(store, acme)
    theirs = await add(store, other, name="theirs")
    assert await geofences(store).geofences(acme) == [mine]
    assert await geofences(store).geofence(acme, theirs.id) is None
    assert await geofences(store).delete_geofence(acme, theirs.id) is False
    assert await geofences(store).geofences(other) == [theirs]


async def test_delete_a_geofence(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    gone, kept = await add(store, tenant), await add(store, tenant, name="kept")
    assert await geofences(store).delete_geofence(tenant, gone.id) is True
    assert await geofences(store).delete_geofence(tenant, gone.id) is False
    assert await geofences(store).geofence(tenant, gone.id) is None
    assert await geofences(store).geofences(tenant) == [kept]
    assert await geofences(store).delete_geofence(tenant, kept.id) is True
    again = await add(store, tenant, name="again")
    # Never an id given before: detectors keep per-geofence state under it.
    assert again.id not in (gone.id, kept.id)


async def test_which_geofences_watch_a_device(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    everyone = await add(store, tenant)
    only_first = await add(store, tenant, devices=IMEIS[:1])
    stored = await geofences(store).geofences(tenant)
    assert geofences_of_device(stored, IMEIS[0]) == [everyone, only_first]
    assert geofences_of_device(stored, IMEIS[1]) == [everyone]
