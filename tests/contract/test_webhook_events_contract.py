"""Webhook events owed by the store with the change they announce (CONTRACT §7, shared/webhook_events.py),
for every store adapter: an alert's changes and a device's answer to a command are owed to the
subscribed endpoints in the change's own write, once, under an id derived from the change.

Only port methods are used, except in the last tests, which stop a MongoDB write half way and
check that the next open owes what the stopped write did not.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from shared.bus.topics import TOPIC_ALARM
from shared.protocols.xsole import CommandCode, CommandResult
from shared.store import Store
from shared.store.mongo import MongoStore
from shared.store.webhooks import WebhookEndpoint
from shared.webhook_events import derived_event_id, device_status_event, new_event_id
from tests.contract.store_data import OTHER_IMEI, add_device, frame, outbox, raised_alert
from tests.helpers.stored import commit_frames

ALERT_EVENTS = ("alert.raised", "alert.acknowledged", "alert.resolved")


class Stopped(Exception):
    """The process 'stops' here."""


async def add_endpoint(store: Store, tenant_id: int, events: tuple[str, ...]) -> WebhookEndpoint:
    return await store.add_webhook_endpoint(
        tenant_id=tenant_id, url="https://hooks.example/a", events=events, description=None, secret="whsec_x"
    )


async def owed(store: Store, endpoint: WebhookEndpoint) -> list[tuple[str, str, dict[str, Any]]]:
    """(type, event id, body) of what the endpoint is owed, oldest first."""
    deliveries = await store.webhook_deliveries(endpoint.tenant_id, endpoint.id)
    return [(d.type, d.event_id, orjson.loads(d.payload)) for d in reversed(deliveries)]


async def test_an_alerts_changes_are_owed_with_them_to_subscribed_endpoints_only(store: Store) -> None:
    device = await add_device(store)
    tenant = device.tenant_id
    every = await add_endpoint(store, tenant, ALERT_EVENTS)
    raised_only = await add_endpoint(store, tenant, ("alert.raised",))
    pings = await add_endpoint(store, tenant, ("ping",))
    disabled = await add_endpoint(store, tenant, ALERT_EVENTS)
    await store.update_webhook_endpoint(tenant, disabled.id, enabled=False)
    elsewhere = await add_endpoint(store, await store.ensure_tenant("other"), ALERT_EVENTS)

    alert = await raised_alert(store, device)
    await store.acknowledge_alert(tenant, alert.id, by="Ana")
    await store.resolve_alert(tenant, alert.id, by="Ana", note="false alarm")

    got = await owed(store, every)
    assert [(type_, event_id) for type_, event_id, _ in got] == [
        ("alert.raised", derived_event_id("alert", alert.id, "created")),
        ("alert.acknowledged", derived_event_id("alert", alert.id, "acknowledged")),
        ("alert.resolved", derived_event_id("alert", alert.id, "resolved")),
    ]
    for type_, event_id, body in got:
        assert (body["id"], body["type"]) == (event_id, type_)
        assert (body["data"]["id"], body["data"]["imei"], body["data"]["kind"]) == (alert.id, device.imei, "sos")
    assert [body["data"]["status"] for _, _, body in got] == ["open", "acknowledged", "resolved"]
    assert got[2][2]["data"]["resolution_note"] == "false alarm"
    assert got[1][2]["created_at"] == got[1][2]["data"]["acknowledged_at"]  # when the change happened
    assert [type_ for type_, _, _ in await owed(store, raised_only)] == ["alert.raised"]
    assert await owed(store, pings) == [] and await owed(store, disabled) == [] and await owed(store, elsewhere) == []


async def test_an_alarm_delivered_again_owes_nothing_new(store: Store) -> None:
    device = await add_device(store)
    endpoint = await add_endpoint(store, device.tenant_id, ALERT_EVENTS)
    await raised_alert(store, device)
    [message] = await outbox(store, TOPIC_ALARM)
    await store.raise_alert_from_alarm(message)  # the bus delivers the alarm again
    assert [type_ for type_, _, _ in await owed(store, endpoint)] == ["alert.raised"]


async def test_a_devices_answer_to_a_command_owes_command_completed_once(store: Store) -> None:
    device = await add_device(store)
    endpoint = await add_endpoint(store, device.tenant_id, ("command.completed",))
    command_id = await store.enqueue_command(device_id=device.id, cmd=CommandCode.SET_INTERVAL, args=b"\x00\x3c")
    await store.mark_command_sent(command_id, 41)
    answer = frame(device, CommandResult(8, 41, 0))
    await commit_frames(store, [answer])
    await commit_frames(store, [answer])  # the frame delivered again: the command is answered already

    [(type_, event_id, body)] = await owed(store, endpoint)
    assert (type_, event_id) == ("command.completed", derived_event_id("command", command_id, "done"))
    data = body["data"]
    assert (data["id"], data["imei"], data["command"], data["args"], data["status"]) == (
        command_id,
        device.imei,
        "set-interval",
        "003c",
        "done",
    )
    assert data["completed_at"] is not None and data["sent_at"] is not None


async def test_owing_an_event_twice_queues_it_once(store: Store) -> None:
    device = await add_device(store)
    endpoint = await add_endpoint(store, device.tenant_id, ("device.online", "device.offline"))
    status = {"tenant_id": device.tenant_id, "imei": device.imei, "online": True, "battery": 80, "last_seen": None}
    event = device_status_event(status, key="status-1-1", at=time.time())
    assert await store.owe_webhook_event(event, at=time.time()) == 1
    assert await store.owe_webhook_event(event, at=time.time()) == 0
    [(type_, _, body)] = await owed(store, endpoint)
    assert type_ == "device.online" and body["data"] == {
        "imei": device.imei,
        "online": True,
        "battery": 80,
        "last_seen": None,
    }


# -- MongoDB: a write stopped before its events were owed owes them at the next open ------------


def _mongo(store: Store) -> MongoStore:
    mongo = getattr(store, "_store", store)
    if not isinstance(mongo, MongoStore):
        pytest.skip("a MongoDB adapter's recovery: SQLite owes the events in the change's own transaction")
    return mongo


async def test_mongo_an_alert_change_stopped_before_its_events_are_owed_owes_them_at_open(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = _mongo(store)
    device = await add_device(store)
    endpoint = await add_endpoint(store, device.tenant_id, ALERT_EVENTS)
    alert = await raised_alert(store, device)

    async def stop(*args: Any, **kwargs: Any) -> int:
        raise Stopped

    monkeypatch.setattr(mongo, "owe_webhook_event", stop)
    with pytest.raises(Stopped):
        await store.acknowledge_alert(device.tenant_id, alert.id, by="Ana")
    monkeypatch.undo()
    assert [type_ for type_, _, _ in await owed(store, endpoint)] == ["alert.raised"]

    await mongo.open()
    await mongo.open()
    assert [type_ for type_, _, _ in await owed(store, endpoint)] == ["alert.raised", "alert.acknowledged"]


async def test_mongo_an_answer_stopped_before_its_event_is_owed_owes_it_at_open(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = _mongo(store)
    device = await add_device(store)
    endpoint = await add_endpoint(store, device.tenant_id, ("command.completed",))
    command_id = await store.enqueue_command(device_id=device.id, cmd=CommandCode.VIBRATE)
    await store.mark_command_sent(command_id, 7)

    async def stop(*args: Any, **kwargs: Any) -> int:
        raise Stopped

    monkeypatch.setattr(mongo, "owe_webhook_event", stop)
    with pytest.raises(Stopped):
        await commit_frames(store, [frame(device, CommandResult(3, 7, 1))])
    monkeypatch.undo()
    assert await owed(store, endpoint) == []

    await mongo.open()
    await mongo.open()
    [(type_, _, body)] = await owed(store, endpoint)
    assert (type_, body["data"]["status"]) == ("command.completed", "failed")


async def test_erasing_a_device_deletes_the_events_about_it_and_nothing_else(store: Store) -> None:
    erased, kept = await add_device(store), await add_device(store, OTHER_IMEI, name="Bob")
    tenant = erased.tenant_id
    endpoint = await add_endpoint(store, tenant, (*ALERT_EVENTS, "device.online", "ping"))
    await raised_alert(store, erased)
    kept_alert = await raised_alert(store, kept, seq=2)
    for device in (erased, kept):
        status = {"tenant_id": tenant, "imei": device.imei, "online": True, "battery": 80, "last_seen": None}
        await store.owe_webhook_event(device_status_event(status, key=f"status-{device.id}", at=1.0), at=1.0)
    await store.queue_webhook_event(
        tenant_id=tenant, endpoint_ids=[endpoint.id], event_id=new_event_id(), type="ping", payload=b"{}", at=1.0
    )
    assert len(await owed(store, endpoint)) == 5

    assert await store.retire_device(erased.id, erase=True)
    left = await owed(store, endpoint)
    assert sorted(type_ for type_, _, _ in left) == ["alert.raised", "device.online", "ping"]
    assert erased.imei.encode() not in b"".join(orjson.dumps(body) for _, _, body in left)
    assert [body["data"]["id"] for type_, _, body in left if type_ == "alert.raised"] == [kept_alert.id]
