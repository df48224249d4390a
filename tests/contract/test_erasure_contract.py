"""Erasure (CONTRACT §5 and §8) for every store adapter: after `retire_device(erase=True)` a scan of
the whole store (every table or collection, every row, every value) finds nothing with the device's
IMEI or its id, except the audit log; another device keeps everything; and every table or collection
is named in the adapter's ERASURE list, so one added later cannot be forgotten by erasure.

A device's life is stored first through the ports: frames of every kind, an alarm and its alert
acknowledged with a notification and an SMS reply code, an escalation and a detection, commands,
settings, a geofence naming it, webhook deliveries and pending positions, and outbox messages not
yet relayed (nothing relays them here).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from bson import BSON

from shared.protocols.xsole import Activity, CommandCode, Heartbeat
from shared.store import Store
from shared.store.device_settings import DeviceSettings
from shared.store.mongo import MongoStore
from shared.store.mongo_devices import ERASURE as MONGO_ERASURE
from shared.store.sqlite import SqliteStore
from shared.store.sqlite_devices import ERASURE as SQLITE_ERASURE
from shared.store.webhooks import WebhookEndpoint
from tests.contract.store_data import IMEI, OTHER_IMEI, TS, add_device, frame, position, raised_alert
from tests.helpers.stored import commit_frames

CIRCLE = {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 250.0}
SHIFT = {"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "17:00", "timezone": "Europe/Paris"}
EVERY_EVENT = ("alert.raised", "alert.acknowledged", "alert.escalated", "device.online", "positions")


async def live_a_day(store: Store, device: Any, endpoint: WebhookEndpoint, seq: int) -> None:
    tenant = device.tenant_id
    await commit_frames(
        store,
        [
            frame(device, position(seq, TS + seq)),
            frame(device, Heartbeat(seq + 1, TS + seq + 1, 80, -70)),
            frame(device, Activity(seq + 2, TS + seq + 2, 10, 2, 90, 80, 0)),
        ],
    )
    alert = await raised_alert(store, device, seq + 3)
    contact = await store.add_contact(tenant_id=tenant, name="Ana", email=None, phone="+33612345678", kinds=())
    assert await store.claim_notification(alert_id=alert.id, contact_id=contact.id, channel="sms", step=1)
    await store.issue_reply_code(tenant_id=tenant, alert_id=alert.id, contact_id=contact.id, phone="+33612345678")
    await store.schedule_escalation(alert_id=alert.id, tenant_id=tenant, step=2, due_at=TS + 3600)
    await store.acknowledge_alert(tenant, alert.id, by="Ana")
    command = await store.enqueue_command(device_id=device.id, cmd=CommandCode.VIBRATE)
    await store.mark_command_sent(command, 40 + seq)
    await store.set_device_settings(device.id, DeviceSettings(offline_after=600, shift=SHIFT))
    await store.add_pending_positions(
        tenant_id=tenant,
        endpoint_ids=[endpoint.id],
        message_id=f"telemetry-{seq}",
        items=[(device.id, {"imei": device.imei, "ts": "2026-01-01T00:00:00Z", "lat": 43.6, "lon": 7.05})],
        at=TS,
    )


async def test_after_an_erasure_nothing_but_the_audit_log_names_the_device(store: Store) -> None:
    erased, kept = await add_device(store), await add_device(store, OTHER_IMEI, name="Bob")
    tenant = erased.tenant_id
    endpoint = await store.add_webhook_endpoint(
        tenant_id=tenant, url="https://hooks.example/a", events=EVERY_EVENT, description=None, secret="whsec_x"
    )
    await store.add_geofence(
        tenant_id=tenant, name="Depot", shape=CIRCLE, devices=(IMEI, OTHER_IMEI), alert_on=("exit",)
    )
    await live_a_day(store, erased, endpoint, 1)
    await live_a_day(store, kept, endpoint, 10)
    assert names(await dump(store), IMEI, erased.id)  # the scan sees what is there

    assert await store.retire_device(erased.id, erase=True)

    everything = await dump(store)
    assert names(everything, IMEI, erased.id) == []
    assert names(everything, OTHER_IMEI, kept.id) != []  # Bob's life is all still there
    [fence] = await store.geofences(tenant)
    assert fence.devices == (OTHER_IMEI,)
    assert [a.imei for a in await store.alerts(tenant)] == [OTHER_IMEI]


async def test_every_table_or_collection_says_how_erasure_treats_it(store: Store) -> None:
    device = await add_device(store)
    endpoint = await store.add_webhook_endpoint(
        tenant_id=device.tenant_id, url="https://hooks.example/a", events=EVERY_EVENT, description=None, secret="s"
    )
    await live_a_day(store, device, endpoint, 1)  # a MongoDB collection exists once written to
    adapter = getattr(store, "_store", store)
    if isinstance(adapter, SqliteStore):
        tables = set(await adapter._read(lambda c: _names(c, "table")))
        assert tables == set(SQLITE_ERASURE), "name each new table in shared/store/sqlite_devices.py ERASURE"
    else:
        assert isinstance(adapter, MongoStore)
        collections = set(await adapter._db.list_collection_names())
        assert collections <= set(MONGO_ERASURE), "name each new collection in shared/store/mongo_devices.py ERASURE"


# -- the scan ----------------------------------------------------------------------------------------


async def dump(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (SQLite) or every document of every collection (MongoDB)."""
    adapter = getattr(store, "_store", store)
    if isinstance(adapter, SqliteStore):
        return await adapter._read(_sqlite_rows)  # type: ignore[no-any-return]
    assert isinstance(adapter, MongoStore)
    db = adapter._db
    return {name: await db[name].find({}).to_list(None) for name in await db.list_collection_names()}


def _names(c: sqlite3.Connection, kind: str) -> list[str]:
    return [name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,))]


def _sqlite_rows(c: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in _names(c, "table"):
        cursor = c.execute(f"SELECT * FROM {table}")  # names from sqlite_master
        columns = [d[0] for d in cursor.description]
        tables[table] = [dict(zip(columns, row, strict=True)) for row in cursor]
    return tables


def names(everything: dict[str, list[dict[str, Any]]], imei: str, device_id: int) -> list[str]:
    """Where the store still names the device: its IMEI in any value (text, JSON, bytes, nested),
    or its id as a `device_id` or as the devices table's own id. The audit log is allowed to."""
    found = []
    for table, rows in everything.items():
        if table == "audit":
            continue
        for row in rows:
            if imei.encode() in _as_bytes(row):
                found.append(f"{table}: IMEI in {row}")
            if row.get("device_id") == device_id or (table == "devices" and row.get("_id", row.get("id")) == device_id):
                found.append(f"{table}: device id in {row}")
    return found


def _as_bytes(row: dict[str, Any]) -> bytes:
    if "_id" in row:  # a MongoDB document: BSON holds every value, nested and binary ones included
        return BSON.encode(row)
    return b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
