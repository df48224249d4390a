"""The devices port (shared/store/devices.py) for every adapter in STORE_FACTORIES: devices,
and the downlink commands queued for them (answered by the frames the telemetry port commits).

Only port methods are used, never an adapter's tables. Each test gets a fresh, empty store.
"""

from __future__ import annotations

import asyncio

import pytest

from shared.protocols.xsole import CommandCode, CommandResult
from shared.store import Device, DeviceExists, Store
from tests.contract.store_data import IMEI, OTHER_IMEI, add_device, frame
from tests.helpers.stored import commit_frames


async def test_ping_on_an_open_store(store: Store) -> None:
    await store.ping()


async def test_add_a_device_and_find_it(store: Store) -> None:
    tenant_id = await store.ensure_tenant("acme")
    assert await store.ensure_tenant("acme") == tenant_id  # ensure, not create
    device = await store.add_device(tenant_id=tenant_id, imei=IMEI, name="Alice", token_hash=b"h" * 32)

    assert (device.tenant_id, device.imei, device.name, device.token_hash, device.enabled) == (
        tenant_id,
        IMEI,
        "Alice",
        b"h" * 32,
        True,
    )
    assert (device.last_seen, device.battery, device.last_fix_ts) == (None, None, None)
    assert await store.device_by_imei(IMEI) == device
    assert await store.device(device.id) == device
    assert await store.device_by_imei(OTHER_IMEI) is None
    assert await store.device(device.id + 1000) is None


async def test_an_imei_is_registered_once_across_tenants(store: Store) -> None:
    await add_device(store, tenant="acme")
    with pytest.raises(DeviceExists):
        await add_device(store, tenant="acme", name="Again")
    with pytest.raises(DeviceExists):
        await add_device(store, tenant="globex", name="Elsewhere")
    assert (await store.device_by_imei(IMEI)).name == "Alice"  # type: ignore[union-attr]


async def test_concurrent_registrations_of_one_imei_have_one_winner(store: Store) -> None:
    tenant_id = await store.ensure_tenant("acme")
    results = await asyncio.gather(
        *(store.add_device(tenant_id=tenant_id, imei=IMEI, name=f"w{n}", token_hash=b"h") for n in range(10)),
        return_exceptions=True,
    )
    [device] = [r for r in results if isinstance(r, Device)]
    assert all(isinstance(r, DeviceExists) for r in results if r is not device)
    assert await store.devices(tenant_id) == [device]


async def test_set_device_token(store: Store) -> None:
    device = await add_device(store)
    await store.set_device_token(imei=IMEI, token_hash=b"n" * 32)
    assert (await store.device_by_imei(IMEI)).token_hash == b"n" * 32  # type: ignore[union-attr]
    assert (await store.device(device.id)).token_hash == b"n" * 32  # type: ignore[union-attr]


async def test_devices_by_tenant_with_cursor(store: Store) -> None:
    ours = [await add_device(store, f"35630704244{n:04d}", name=f"w{n}") for n in range(7)]
    await add_device(store, OTHER_IMEI, tenant="globex")
    tenant_id = ours[0].tenant_id

    assert await store.devices(tenant_id) == ours
    walked: list[Device] = []
    after: int | None = None
    while page := await store.devices(tenant_id, after_id=after, limit=3):
        assert len(page) <= 3
        walked += page
        after = page[-1].id
    assert walked == ours
    assert await store.devices(tenant_id, after_id=ours[-1].id) == []


async def test_commands_from_queued_to_sent_to_done(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI)
    locate = await store.enqueue_command(device_id=device.id, cmd=CommandCode.LOCATE_NOW)
    interval = await store.enqueue_command(device_id=device.id, cmd=CommandCode.SET_INTERVAL, args=b"\x00\x3c")
    elsewhere = await store.enqueue_command(device_id=other.id, cmd=CommandCode.VIBRATE)

    queued = await store.commands_to_send()
    assert [(c.id, c.device_id, c.imei, c.cmd, c.args, c.status, c.seq) for c in queued] == [
        (locate, device.id, IMEI, CommandCode.LOCATE_NOW, b"", "pending", None),
        (interval, device.id, IMEI, CommandCode.SET_INTERVAL, b"\x00\x3c", "pending", None),
        (elsewhere, other.id, OTHER_IMEI, CommandCode.VIBRATE, b"", "pending", None),
    ]
    assert [c.id for c in await store.commands_to_send([device.id])] == [locate, interval]
    assert await store.commands_to_send([]) == []

    await store.mark_command_sent(locate, 41)
    assert [c.id for c in await store.commands_to_send([device.id])] == [interval]
    unanswered = await store.commands_to_send([device.id], include_unanswered=True)
    assert [(c.id, c.status, c.seq) for c in unanswered] == [(locate, "sent", 41), (interval, "pending", None)]

    # A result for the same seq from another device answers nothing of ours.
    await commit_frames(store, [frame(other, CommandResult(7, 41, 0))])
    assert [c.id for c in await store.commands_to_send([device.id], include_unanswered=True)] == [locate, interval]
    await commit_frames(store, [frame(device, CommandResult(8, 41, 0))])
    assert [c.id for c in await store.commands_to_send([device.id], include_unanswered=True)] == [interval]
    assert [c.id for c in await store.commands_to_send(include_unanswered=True)] == [interval, elsewhere]

    # One command as it stands, answered or not.
    done = await store.command(locate)
    assert done is not None
    assert (done.id, done.device_id, done.imei, done.cmd, done.args, done.status, done.seq) == (
        locate,
        device.id,
        IMEI,
        CommandCode.LOCATE_NOW,
        b"",
        "done",
        41,
    )
    assert await store.command(interval) == queued[1]
    assert await store.command(locate + interval + elsewhere) is None


async def test_a_command_sent_again_is_awaited_under_its_new_seq(store: Store) -> None:
    device = await add_device(store)
    command = await store.enqueue_command(device_id=device.id, cmd=CommandCode.REBOOT)
    assert await store.mark_command_sent(command, 10)
    await store.mark_command_sent(command, 11)  # the device reconnected before answering
    [sent] = await store.commands_to_send(include_unanswered=True)
    assert (sent.status, sent.seq) == ("sent", 11)
    await commit_frames(store, [frame(device, CommandResult(3, 11, 1))])  # failed is an answer too
    assert await store.commands_to_send(include_unanswered=True) == []
    await store.mark_command_sent(command, 12)  # a late mark does not reopen an answered command
    assert await store.commands_to_send(include_unanswered=True) == []
