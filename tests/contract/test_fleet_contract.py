"""The fleet's lifecycle in the devices port (shared/store/devices.py) for every adapter in
STORE_FACTORIES: rename, disable, rotate, retire (and erase), commands that expire, a device's
command history, each change with its audit entry.

Only port methods are used (and count_stored, which reads what telemetry a device has).
"""

from __future__ import annotations

import time

import pytest

from shared.protocols.xsole import CommandCode, CommandResult, Heartbeat
from shared.store import Store, command_status
from shared.store.audit import Actor, AuditEntry
from tests.contract.store_data import IMEI, OTHER_IMEI, TS, add_device, frame, position, raised_alert
from tests.contract.test_audit_contract import Stopped, mongo_only
from tests.helpers.stored import commit_frames, count_stored

ADMIN = Actor("user", "1", "admin@example.com")


def entry(tenant_id: int, action: str, target_id: str | None = IMEI, **detail: object) -> AuditEntry:
    return AuditEntry(tenant_id, ADMIN, action, "device", target_id, dict(detail))


async def actions(store: Store, tenant_id: int) -> list[tuple[str, str | None]]:
    return [(r.entry.action, r.entry.target_id) for r in reversed(await store.audit_log(tenant_id))]


async def test_registering_writes_its_entry_naming_the_imei(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    await store.add_device(
        tenant_id=tenant, imei=IMEI, name="Alice", token_hash=b"h", audit=entry(tenant, "device.create", None)
    )
    assert await actions(store, tenant) == [("device.create", IMEI)]


async def test_rename_disable_and_enable(store: Store) -> None:
    device = await add_device(store)
    tenant = device.tenant_id

    renamed = await store.update_device(device.id, name="Bea", audit=entry(tenant, "device.update", name="Bea"))
    assert renamed is not None and (renamed.name, renamed.enabled) == ("Bea", True)
    disabled = await store.update_device(device.id, enabled=False, audit=entry(tenant, "device.update"))
    assert disabled is not None and (disabled.name, disabled.enabled) == ("Bea", False)
    assert await store.device_by_imei(IMEI) == disabled  # what a LOGIN sees from now on
    enabled = await store.update_device(device.id, enabled=True)
    assert enabled is not None and enabled.enabled
    assert await store.update_device(device.id) == enabled  # nothing asked, nothing changed

    assert await store.update_device(device.id + 1000, name="x", audit=entry(tenant, "device.update")) is None
    assert await actions(store, tenant) == [("device.update", IMEI), ("device.update", IMEI)]
    assert (await store.audit_log(tenant))[-1].entry.detail == {"name": "Bea"}


async def test_rotating_the_token(store: Store) -> None:
    device = await add_device(store)
    rotated = entry(device.tenant_id, "device.token_rotate")
    assert await store.set_device_token(imei=IMEI, token_hash=b"n" * 32, audit=rotated)
    assert (await store.device_by_imei(IMEI)).token_hash == b"n" * 32  # type: ignore[union-attr]
    assert not await store.set_device_token(imei=OTHER_IMEI, token_hash=b"x", audit=rotated)
    assert await actions(store, device.tenant_id) == [("device.token_rotate", IMEI)]


async def test_a_retired_imei_registers_again_as_a_new_device_without_the_old_history(store: Store) -> None:
    old = await add_device(store)
    await commit_frames(store, [frame(old, position(1, TS)), frame(old, Heartbeat(2, TS + 1, 80, -70))])
    alert = await raised_alert(store, old, 3)
    command = await store.enqueue_command(device_id=old.id, cmd=CommandCode.VIBRATE)

    retired = entry(old.tenant_id, "device.delete", erase=False)
    assert await store.retire_device(old.id, audit=retired)
    assert await store.device_by_imei(IMEI) is None  # its LOGIN: unknown device
    assert await store.device(old.id) is None
    assert await store.devices(old.tenant_id) == []
    assert await store.commands_to_send(include_unanswered=True) == []  # never sent
    assert not await store.retire_device(old.id, audit=retired)  # nothing retired, nothing recorded
    # Not erased: the old alert is still the tenant's history.
    assert [a.id for a in await store.alerts(old.tenant_id)] == [alert.id]

    new = await add_device(store, name="Carol")
    assert new.id != old.id
    assert await store.positions(new.id) == []
    assert await count_stored(store, new.id) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}
    assert await store.alerts(new.tenant_id, imei=IMEI) == []
    assert await store.device_commands(new.id) == []
    assert await store.command(command) is None
    assert (await store.device_settings(new.id)).shift is None
    assert await actions(store, old.tenant_id) == [("device.delete", IMEI)]


async def test_devices_by_ids_finds_those_that_still_exist(store: Store) -> None:
    alice = await add_device(store)
    bob = await add_device(store, OTHER_IMEI, name="Bob")
    assert await store.retire_device(bob.id)
    # More ids than one query takes, most of them never given: the listener's whole fleet at once.
    found = await store.devices_by_ids([*range(10_000, 11_200), alice.id, bob.id])
    assert [(d.id, d.imei, d.enabled) for d in found] == [(alice.id, IMEI, True)]
    assert found[0].token_hash == alice.token_hash
    assert await store.devices_by_ids([]) == []


async def test_erase_deletes_everything_stored_about_the_device(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI)
    for owner in (device, other):
        await commit_frames(store, [frame(owner, position(1, TS)), frame(owner, Heartbeat(2, TS + 1, 80, -70))])
        await raised_alert(store, owner, 3)
        await store.enqueue_command(device_id=owner.id, cmd=CommandCode.VIBRATE)
    [alert] = await store.alerts(device.tenant_id, imei=IMEI)
    await store.add_alert_event(alert.id, action="notified", actor=None, detail={"to": "bob"})
    before = await count_stored(store, other.id)

    assert await store.retire_device(device.id, erase=True, audit=entry(device.tenant_id, "device.delete", erase=True))

    assert await count_stored(store, device.id) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}
    assert await store.positions(device.id) == []
    assert await store.alert(device.tenant_id, alert.id) is None
    assert await store.alert_timeline(device.tenant_id, alert.id) == []
    assert [a.imei for a in await store.alerts(device.tenant_id)] == [OTHER_IMEI]
    # The other device keeps everything.
    assert await count_stored(store, other.id) == before
    assert len(await store.device_commands(other.id)) == 1
    [record] = await store.audit_log(device.tenant_id)
    assert (record.entry.action, record.entry.detail) == ("device.delete", {"erase": True})


async def test_an_expired_command_is_never_sent(store: Store) -> None:
    device = await add_device(store)
    expired = await store.enqueue_command(device_id=device.id, cmd=CommandCode.LOCATE_NOW, ttl_s=-1)
    lasting = await store.enqueue_command(device_id=device.id, cmd=CommandCode.VIBRATE, ttl_s=3600)
    forever = await store.enqueue_command(device_id=device.id, cmd=CommandCode.REBOOT)

    assert [c.id for c in await store.commands_to_send()] == [lasting, forever]
    assert [c.id for c in await store.commands_to_send([device.id], include_unanswered=True)] == [lasting, forever]
    # A listener that read it just before it expired is told not to send it.
    assert not await store.mark_command_sent(expired, 5)
    stored = await store.command(expired)
    assert stored is not None and (stored.status, stored.sent_at) == ("pending", None)
    assert command_status(stored, time.time()) == "expired"
    stored = await store.command(lasting)
    assert stored is not None and command_status(stored, time.time()) == "pending"
    assert stored.expires_at is not None and 3590 < stored.expires_at - stored.created_at <= 3600


async def test_a_devices_commands_newest_first_with_times_and_paging(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI)
    ids = [await store.enqueue_command(device_id=device.id, cmd=CommandCode.VIBRATE) for _ in range(5)]
    await store.enqueue_command(device_id=other.id, cmd=CommandCode.VIBRATE)
    await store.mark_command_sent(ids[0], ids[0] & 0xFFFF)
    await commit_frames(store, [frame(device, CommandResult(9, ids[0] & 0xFFFF, 2))])

    listed = await store.device_commands(device.id)
    assert [c.id for c in listed] == ids[::-1]
    oldest = listed[-1]
    assert oldest.status == "unsupported" and oldest.sent_at is not None and oldest.completed_at is not None
    assert oldest.created_at <= oldest.sent_at <= oldest.completed_at
    assert listed[0].sent_at is None and listed[0].completed_at is None

    first = await store.device_commands(device.id, limit=2)
    second = await store.device_commands(device.id, limit=2, before_id=first[-1].id)
    rest = await store.device_commands(device.id, limit=2, before_id=second[-1].id)
    assert [c.id for c in first + second + rest] == ids[::-1]


async def test_a_queued_command_writes_its_entry_with_its_id(store: Store) -> None:
    device = await add_device(store)
    queued = entry(device.tenant_id, "device.command", command="vibrate")
    command = await store.enqueue_command(device_id=device.id, cmd=CommandCode.VIBRATE, audit=queued)
    [record] = await store.audit_log(device.tenant_id)
    assert (record.entry.action, record.entry.detail) == ("device.command", {"command": "vibrate", "id": command})


# -- MongoDB: no transaction, so an erasure is ordered and can be repeated -------------------


async def test_mongo_an_erasure_stopped_before_the_device_goes_is_finished_by_asking_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = mongo_only(store)
    device = await add_device(store)
    await commit_frames(store, [frame(device, position(1, TS))])
    await raised_alert(store, device, 2)
    retired = entry(device.tenant_id, "device.delete", erase=True)

    async def stop(*args: object) -> bool:
        raise Stopped

    monkeypatch.setattr(mongo, "_audited_delete", stop)
    with pytest.raises(Stopped):
        await store.retire_device(device.id, erase=True, audit=retired)
    monkeypatch.undo()
    # Erased, but still registered and not yet in the log: its LOGIN is still checked as before.
    assert await count_stored(store, device.id) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}
    assert await store.device_by_imei(IMEI) is not None
    assert await store.audit_log(device.tenant_id) == []

    assert await store.retire_device(device.id, erase=True, audit=retired)
    assert await store.device_by_imei(IMEI) is None
    assert await actions(store, device.tenant_id) == [("device.delete", IMEI)]
