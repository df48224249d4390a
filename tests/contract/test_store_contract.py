"""The storage port's contract (shared/store/port.py, accounts.py, alerts.py and the
optional NotificationRecovery of shared/alerts/ledger.py), for every adapter in
STORE_FACTORIES.

Only the port's methods are used, never an adapter's tables: what one adapter
passes, any other must pass too. Each test gets a fresh, empty store.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from shared.alerts.ledger import NotificationKey, NotificationRecovery
from shared.bus.topics import TOPIC_ALARM, TOPIC_ALERT, TOPIC_TELEMETRY
from shared.protocols.xsole import Activity, Alarm, AlarmKind, CommandCode, CommandResult, Heartbeat, Position
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID
from shared.protocols.xsole.validation import MAX_FUTURE_SKEW_S
from shared.store import Device, DeviceExists, FrameRecord, Store, hash_device_token
from shared.store.accounts import TenantExists, UserExists
from shared.store.alerts import Alert, AlertTransitionRefused
from shared.store.messages import telemetry_items

# Yesterday, midnight UTC: alarms must read as recent, or the store dates their alerts by receive time.
TS = int(time.time()) // 86400 * 86400 - 86400
IMEI = "356307042441013"
OTHER_IMEI = "356307042441021"
LAT, LON = 436163000, 70553000


async def add_device(store: Store, imei: str = IMEI, *, tenant: str = "acme", name: str = "Alice") -> Device:
    tenant_id = await store.ensure_tenant(tenant)
    return await store.add_device(
        tenant_id=tenant_id, imei=imei, name=name, token_hash=hash_device_token(imei.encode())
    )


def frame(device: Device, event: Any, received_at: float | None = None) -> FrameRecord:
    return FrameRecord(
        device.id, device.tenant_id, device.imei, event, time.time() if received_at is None else received_at
    )


def position(seq: int, ts: int, *, lat: int = LAT, battery: int = 80, flags: int = FLAG_FIX_VALID) -> Position:
    return Position(seq, ts, lat, LON, 12, 140, 900, 9, 11, battery, flags)


def sos(seq: int, ts: int, *, kind: int = AlarmKind.SOS, lat: int = LAT, lon: int = LON) -> Alarm:
    return Alarm(seq, ts, kind, lat, lon, 55, FLAG_FIX_VALID)


_POSITION_FIELDS = Position._fields


def fields(stored: Any) -> tuple[int, ...]:
    """A stored position's values by field name, whatever type the adapter returns it as."""
    return tuple(getattr(stored, name) for name in _POSITION_FIELDS)


async def stored_positions(store: Store, device_id: int, **query: Any) -> list[tuple[int, ...]]:
    return [fields(p) for p in await store.positions(device_id, **query)]


async def outbox(store: Store, topic: str | None = None) -> list[dict[str, Any]]:
    return [orjson.loads(e.payload) for e in await store.outbox_pending(1000) if topic is None or e.topic == topic]


async def raised_alert(store: Store, device: Device, seq: int = 1, *, kind: int = AlarmKind.SOS) -> Alert:
    """The alert of a newly committed ALARM, raised from its outbox message as the alert engine does."""
    before = {m["alarm_id"] for m in await outbox(store, TOPIC_ALARM)}
    await store.commit_frames([frame(device, sos(seq, TS + seq, kind=kind))])
    [message] = [m for m in await outbox(store, TOPIC_ALARM) if m["alarm_id"] not in before]
    alert, created = await store.raise_alert_from_alarm(message)
    assert created
    return alert


# -- devices ----------------------------------------------------------------------------


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


# -- ingestion --------------------------------------------------------------------------


async def test_committing_the_same_frames_twice_stores_each_once(store: Store) -> None:
    device = await add_device(store)
    fix = position(1, TS + 1)
    records = [
        frame(device, fix),
        frame(device, Heartbeat(2, TS + 2, 80, -70)),
        frame(device, Activity(3, TS + 3, 120, 2, 96, 80, 0)),
        frame(device, sos(4, TS + 4)),
    ]
    await store.commit_frames(records)
    await store.commit_frames(records)
    # A retransmission is received later, and may share a commit with its first copy.
    later = [record._replace(received_at=record.received_at + 5) for record in records]
    await store.commit_frames(later + later)

    assert await store.count_stored(device.id) == {"positions": 1, "heartbeats": 1, "activities": 1, "alarms": 1}
    assert await stored_positions(store, device.id) == [tuple(fix)]


async def test_an_alarm_stored_twice_gives_one_alarm_message(store: Store) -> None:
    device = await add_device(store)
    alarm = frame(device, sos(4, TS + 4, kind=AlarmKind.FALL))
    await store.commit_frames([alarm])
    await store.commit_frames([alarm])
    await store.commit_frames([alarm._replace(received_at=alarm.received_at + 3), alarm])

    [message] = await outbox(store, TOPIC_ALARM)
    assert message["alarm_id"] is not None
    assert {k: message[k] for k in ("tenant_id", "device_id", "imei", "kind", "ts", "device_ts", "seq")} == {
        "tenant_id": device.tenant_id,
        "device_id": device.id,
        "imei": IMEI,
        "kind": "fall",
        "ts": TS + 4,
        "device_ts": TS + 4,
        "seq": 4,
    }
    assert (message["lat"], message["lon"], message["battery"]) == (43.6163, 7.0553, 55)


async def test_concurrent_commits_of_one_alarm_give_one_alarm_message(store: Store) -> None:
    # A device that reconnects may retransmit while its first copy is still being committed.
    device = await add_device(store)
    alarm = frame(device, sos(4, TS + 4))
    await asyncio.gather(*(store.commit_frames([alarm._replace(received_at=alarm.received_at + n)]) for n in range(10)))
    assert len(await outbox(store, TOPIC_ALARM)) == 1
    assert (await store.count_stored(device.id))["alarms"] == 1


async def test_a_commit_is_all_or_nothing(store: Store) -> None:
    device = await add_device(store)
    await store.commit_frames([])  # nothing to store is harmless
    assert await store.outbox_pending(10) == []
    # An alarm of a kind the store cannot name: whether the store takes the commit or
    # refuses it, it never keeps half of it.
    records = [frame(device, position(1, TS + 1)), frame(device, sos(2, TS + 2, kind=99))]
    try:
        await store.commit_frames(records)
    except Exception:
        assert await store.count_stored(device.id) == {"positions": 0, "heartbeats": 0, "activities": 0, "alarms": 0}
        assert await store.outbox_pending(10) == []
    else:
        assert await store.count_stored(device.id) == {"positions": 1, "heartbeats": 0, "activities": 0, "alarms": 1}


async def test_last_seen_is_the_latest_receive_time_of_a_commit(store: Store) -> None:
    device = await add_device(store)
    await store.commit_frames(
        [
            frame(device, sos(1, TS + 1), received_at=float(TS + 1)),
            frame(device, position(2, TS + 2), received_at=float(TS + 2)),
        ]
    )
    assert (await store.device(device.id)).last_seen == TS + 2  # type: ignore[union-attr]


async def test_an_alarm_with_a_bad_clock_and_fix_is_kept(store: Store) -> None:
    # A worker's SOS is never lost to a wrong clock or fix: the receive time stands in,
    # the location is unknown.
    device = await add_device(store)
    received = float(TS)
    bad = sos(1, TS + MAX_FUTURE_SKEW_S + 3600, lat=95 * 10**7)._replace(battery=255)  # 255: level unknown
    await store.commit_frames([frame(device, bad, received)])
    [message] = await outbox(store, TOPIC_ALARM)
    assert (message["ts"], message["device_ts"]) == (TS, TS + MAX_FUTURE_SKEW_S + 3600)
    assert (message["lat"], message["lon"], message["battery"]) == (None, None, None)
    assert (await store.count_stored(device.id))["alarms"] == 1


async def test_a_commit_publishes_its_telemetry(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI, tenant="globex")
    await store.commit_frames(
        [
            frame(device, position(1, TS + 1)),
            frame(other, position(1, TS + 1, lat=LAT + 5)),
            frame(device, Heartbeat(2, TS + 2, 79, -70)),
        ]
    )
    [entry] = await store.outbox_pending(10)
    assert entry.topic == TOPIC_TELEMETRY
    positions = list(telemetry_items(entry.payload, "positions"))
    assert [(p["imei"], p["tenant_id"], p["seq"], p["lat_e7"]) for p in positions] == [
        (IMEI, device.tenant_id, 1, LAT),
        (OTHER_IMEI, other.tenant_id, 1, LAT + 5),
    ]
    assert [(h["imei"], h["battery"]) for h in telemetry_items(entry.payload, "heartbeats")] == [(IMEI, 79)]


async def test_a_commit_publishes_each_devices_newest_frames(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI, tenant="globex")
    buffered = FLAG_BUFFERED | FLAG_FIX_VALID
    await store.commit_frames(
        [
            frame(device, position(1, TS + 1)),
            frame(device, position(3, TS + 3, lat=LAT + 3)),
            frame(device, position(2, TS + 2, flags=buffered)),  # arrives last, yet is older
            frame(other, position(1, TS + 1, lat=LAT + 5)),
            frame(device, Heartbeat(4, TS + 4, 79, -70)),
            frame(device, Heartbeat(5, TS + 5, 78, -70)),
            frame(device, CommandResult(6, 1, 0)),
        ]
    )
    [latest] = await store.outbox_pending(10)

    positions = sorted((p["imei"], p["seq"], p["lat_e7"]) for p in telemetry_items(latest.payload, "positions"))
    assert positions == [(IMEI, 3, LAT + 3), (OTHER_IMEI, 1, LAT + 5)]
    assert [(h["seq"], h["battery"]) for h in telemetry_items(latest.payload, "heartbeats")] == [(5, 78)]
    assert list(telemetry_items(latest.payload, "command_results")) == []


async def test_positions_oldest_first_with_range_limit_and_cursor(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI)
    # Two fixes share a timestamp; buffered frames arrive after newer ones.
    events = [position(n, TS + 10 * (n // 2)) for n in range(12)]
    await store.commit_frames([frame(device, e) for e in events[6:]])
    await store.commit_frames([frame(device, e) for e in events[:6]] + [frame(other, position(99, TS + 30))])
    rows = [tuple(e) for e in events]

    assert await stored_positions(store, device.id) == rows
    assert await stored_positions(store, device.id, limit=4) == rows[:4]
    # since and until are inclusive
    assert await stored_positions(store, device.id, since=TS + 10, until=TS + 30) == rows[2:8]
    assert await stored_positions(store, device.id, since=TS + 11, until=TS + 29) == rows[4:6]
    assert await stored_positions(store, device.id, since=TS + 1000) == []

    walked: list[tuple[int, ...]] = []
    after: tuple[int, int] | None = None
    while page := await store.positions(device.id, after=after, limit=5):
        assert len(page) <= 5
        walked += [fields(p) for p in page]
        after = (page[-1].ts, page[-1].seq)
    assert walked == rows
    # the cursor splits two fixes of the same second, and combines with a range
    assert await stored_positions(store, device.id, after=(TS + 20, 4), until=TS + 30) == rows[5:8]


async def test_older_buffered_frames_do_not_replace_the_last_fix_or_battery(store: Store) -> None:
    device = await add_device(store)
    now = time.time()
    await store.commit_frames([frame(device, position(10, TS + 100, lat=LAT + 100, battery=60), now)])
    after_live = await store.device(device.id)
    assert after_live is not None
    assert (after_live.last_fix_ts, after_live.last_lat_e7, after_live.last_lon_e7, after_live.battery) == (
        TS + 100,
        LAT + 100,
        LON,
        60,
    )
    assert after_live.last_seen == now

    buffered = FLAG_FIX_VALID | FLAG_BUFFERED
    await store.commit_frames(
        [
            frame(device, position(5, TS + 50, lat=LAT + 50, battery=90, flags=buffered), now + 1),
            frame(device, Heartbeat(6, TS + 60, 95, -70), now + 1),
            frame(device, Activity(7, TS + 70, 10, 2, 90, 92, FLAG_BUFFERED), now + 1),
        ]
    )
    after_buffered = await store.device(device.id)
    assert after_buffered is not None
    assert (after_buffered.last_fix_ts, after_buffered.last_lat_e7, after_buffered.battery) == (TS + 100, LAT + 100, 60)
    assert after_buffered.last_seen == now + 1  # it was heard from, though

    # Newer readings do replace them; a position without a valid fix moves nothing.
    await store.commit_frames(
        [
            frame(device, position(11, TS + 110, lat=LAT + 110, battery=58), now + 2),
            frame(device, position(12, TS + 120, lat=LAT + 120, battery=57, flags=0), now + 2),
        ]
    )
    latest = await store.device(device.id)
    assert latest is not None
    assert (latest.last_fix_ts, latest.last_lat_e7, latest.battery) == (TS + 110, LAT + 110, 57)
    await store.commit_frames([frame(device, Heartbeat(13, TS + 130, 55, -70), now + 3)])
    assert (await store.device(device.id)).battery == 55  # type: ignore[union-attr]

    # Within one commit too, the newest reading wins whatever the order of the frames.
    await store.commit_frames(
        [
            frame(device, position(15, TS + 150, lat=LAT + 150, battery=50), now + 4),
            frame(device, position(14, TS + 140, lat=LAT + 140, battery=52, flags=buffered), now + 4),
        ]
    )
    latest = await store.device(device.id)
    assert latest is not None
    assert (latest.last_fix_ts, latest.last_lat_e7, latest.battery) == (TS + 150, LAT + 150, 50)


# -- outbox -----------------------------------------------------------------------------


async def test_outbox_in_commit_order_with_cursor_and_removal(store: Store) -> None:
    device = await add_device(store)
    for n in range(1, 6):
        await store.commit_frames([frame(device, position(n, TS + n))])
    await store.commit_frames([frame(device, sos(6, TS + 6))])
    entries = await store.outbox_pending(100)
    assert [e.topic for e in entries] == [TOPIC_TELEMETRY] * 5 + [TOPIC_ALARM]
    assert [e.id for e in entries] == sorted(e.id for e in entries) and len({e.id for e in entries}) == 6
    assert [[p["seq"] for p in telemetry_items(e.payload, "positions")] for e in entries[:5]] == [
        [n] for n in range(1, 6)
    ]

    assert await store.outbox_pending(2) == entries[:2]
    assert await store.outbox_pending(2, after_id=entries[1].id) == entries[2:4]
    assert await store.outbox_pending(100, after_id=entries[-1].id) == []

    await store.outbox_remove([entries[0].id, entries[2].id])
    assert await store.outbox_pending(100) == [entries[1], *entries[3:]]
    await store.outbox_remove([entries[0].id])  # removing twice is harmless
    await store.outbox_remove([])
    await store.outbox_remove([e.id for e in entries])
    assert await store.outbox_pending(100) == []

    # Ids keep growing after removal, so a relay's cursor never skips a new entry.
    await store.commit_frames([frame(device, position(7, TS + 7))])
    [new] = await store.outbox_pending(100, after_id=entries[-1].id)
    assert new.id > entries[-1].id


# -- downlink commands ---------------------------------------------------------------------


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
    await store.commit_frames([frame(other, CommandResult(7, 41, 0))])
    assert [c.id for c in await store.commands_to_send([device.id], include_unanswered=True)] == [locate, interval]
    await store.commit_frames([frame(device, CommandResult(8, 41, 0))])
    assert [c.id for c in await store.commands_to_send([device.id], include_unanswered=True)] == [interval]
    assert [c.id for c in await store.commands_to_send(include_unanswered=True)] == [interval, elsewhere]


async def test_a_command_sent_again_is_awaited_under_its_new_seq(store: Store) -> None:
    device = await add_device(store)
    command = await store.enqueue_command(device_id=device.id, cmd=CommandCode.REBOOT)
    await store.mark_command_sent(command, 10)
    await store.mark_command_sent(command, 11)  # the device reconnected before answering
    [sent] = await store.commands_to_send(include_unanswered=True)
    assert (sent.status, sent.seq) == ("sent", 11)
    await store.commit_frames([frame(device, CommandResult(3, 11, 1))])  # failed is an answer too
    assert await store.commands_to_send(include_unanswered=True) == []
    await store.mark_command_sent(command, 12)  # a late mark does not reopen an answered command
    assert await store.commands_to_send(include_unanswered=True) == []


# -- accounts ---------------------------------------------------------------------------


async def test_tenants(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    assert acme.name == "Acme"
    with pytest.raises(TenantExists):
        await store.create_tenant("Acme")
    ensured = await store.ensure_tenant("Globex")
    with pytest.raises(TenantExists):
        await store.create_tenant("Globex")
    assert await store.ensure_tenant("Acme") == acme.id

    assert await store.tenant(acme.id) == acme
    assert await store.tenant_by_name("Acme") == acme
    assert await store.tenant_by_name("Nobody") is None
    assert await store.tenant(acme.id + ensured + 1000) is None
    assert [(t.id, t.name) for t in await store.tenants()] == [(acme.id, "Acme"), (ensured, "Globex")]


async def test_concurrent_tenant_creation_has_one_winner(store: Store) -> None:
    created = await asyncio.gather(*(store.create_tenant("Acme") for _ in range(10)), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in created) == 1
    assert all(isinstance(r, TenantExists) for r in created if isinstance(r, BaseException))
    ensured = await asyncio.gather(*(store.ensure_tenant("Globex") for _ in range(10)))
    assert len(set(ensured)) == 1
    assert [t.name for t in await store.tenants()] == ["Acme", "Globex"]


async def test_users_have_unique_case_insensitive_emails(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    globex = await store.create_tenant("Globex")
    ana = await store.create_user(
        tenant_id=acme.id, email="Ana@Acme.example", password_hash="h1", role="admin", platform_admin=True
    )
    assert (ana.tenant_id, ana.email.lower(), ana.password_hash, ana.role, ana.platform_admin) == (
        acme.id,
        "ana@acme.example",
        "h1",
        "admin",
        True,
    )
    with pytest.raises(UserExists):
        await store.create_user(tenant_id=acme.id, email="ana@acme.example", password_hash="h2", role="viewer")
    with pytest.raises(UserExists):  # unique across tenants
        await store.create_user(tenant_id=globex.id, email="ANA@ACME.EXAMPLE", password_hash="h3", role="viewer")

    assert await store.user_by_email("aNa@acme.EXAMPLE") == ana
    assert await store.user(ana.id) == ana
    assert await store.user_by_email("bob@acme.example") is None
    bob = await store.create_user(tenant_id=globex.id, email="bob@globex.example", password_hash="h", role="viewer")
    assert bob.platform_admin is False
    assert await store.count_users() == 2

    racing = await asyncio.gather(
        *(
            store.create_user(
                tenant_id=acme.id,
                email=f"{'CAROL' if n % 2 else 'carol'}@acme.example",
                password_hash="h",
                role="viewer",
            )
            for n in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in racing) == 1
    assert all(isinstance(r, UserExists) for r in racing if isinstance(r, BaseException))

    await store.set_password_hash(ana.id, "h-new")
    assert (await store.user_by_email("ana@acme.example")).password_hash == "h-new"  # type: ignore[union-attr]


async def test_api_keys_by_hash_and_revocation(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    globex = await store.create_tenant("Globex")
    key = await store.create_api_key(tenant_id=acme.id, name="erp", prefix="sw_ab12", key_hash=b"k" * 32, role="viewer")
    assert (key.tenant_id, key.name, key.prefix, key.key_hash, key.role, key.revoked) == (
        acme.id,
        "erp",
        "sw_ab12",
        b"k" * 32,
        "viewer",
        False,
    )
    other = await store.create_api_key(tenant_id=acme.id, name="bi", prefix="sw_cd34", key_hash=b"j" * 32, role="admin")

    assert await store.api_key_by_hash(b"k" * 32) == key
    assert await store.api_key_by_hash(b"x" * 32) is None
    assert await store.api_keys(acme.id) == [key, other]
    assert await store.api_keys(globex.id) == []

    assert await store.revoke_api_key(globex.id, key.id) is False  # another tenant's key
    assert (await store.api_key_by_hash(b"k" * 32)).revoked is False  # type: ignore[union-attr]
    assert await store.revoke_api_key(acme.id, key.id) is True
    assert (await store.api_key_by_hash(b"k" * 32)).revoked is True  # type: ignore[union-attr]
    assert await store.revoke_api_key(acme.id, key.id) is True  # revoking twice is harmless
    assert await store.revoke_api_key(acme.id, key.id + other.id + 1000) is False
    assert [k.revoked for k in await store.api_keys(acme.id)] == [True, False]


# -- alerts -----------------------------------------------------------------------------


async def test_an_alarm_raises_one_alert_however_often_it_is_delivered(store: Store) -> None:
    device = await add_device(store)
    await store.commit_frames([frame(device, sos(1, TS + 1, kind=AlarmKind.FALL))])
    [message] = await outbox(store, TOPIC_ALARM)

    results = await asyncio.gather(*(store.raise_alert_from_alarm(message) for _ in range(20)))
    assert sorted(created for _, created in results) == [False] * 19 + [True]
    alert = results[0][0]
    assert all(a == alert for a, _ in results)
    assert (alert.tenant_id, alert.device_id, alert.imei, alert.kind, alert.ts, alert.status, alert.alarm_id) == (
        device.tenant_id,
        device.id,
        IMEI,
        "fall",
        TS + 1,
        "open",
        message["alarm_id"],
    )
    assert (alert.lat, alert.lon, alert.battery) == (43.6163, 7.0553, 55)
    assert await store.alerts(device.tenant_id) == [alert]
    assert await store.alert(device.tenant_id, alert.id) == alert

    assert [(m["event"], m["tenant_id"], m["alert"]["id"]) for m in await outbox(store, TOPIC_ALERT)] == [
        ("created", device.tenant_id, alert.id)
    ]
    [raised] = await store.alert_timeline(device.tenant_id, alert.id)
    assert (raised.alert_id, raised.action, raised.actor) == (alert.id, "raised", None)


async def test_acknowledge_then_resolve(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    tenant = device.tenant_id

    acked = await store.acknowledge_alert(tenant, alert.id, by="ana@acme.example")
    assert acked is not None
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", "ana@acme.example")
    assert acked.acknowledged_at is not None and acked.acknowledged_at >= alert.created_at
    # Acknowledging again changes nothing: the first acknowledgement stands.
    assert await store.acknowledge_alert(tenant, alert.id, by="bob@acme.example") == acked

    resolved = await store.resolve_alert(tenant, alert.id, by="bob@acme.example", note="worker fine")
    assert resolved is not None
    assert (resolved.status, resolved.resolved_by, resolved.resolution_note) == (
        "resolved",
        "bob@acme.example",
        "worker fine",
    )
    assert resolved.acknowledged_by == "ana@acme.example" and resolved.resolved_at is not None
    assert await store.resolve_alert(tenant, alert.id, by="carl@acme.example") == resolved
    with pytest.raises(AlertTransitionRefused):
        await store.acknowledge_alert(tenant, alert.id, by="carl@acme.example")
    assert await store.alert(tenant, alert.id) == resolved

    # One timeline line and one `alert` message per change, as stored.
    timeline = await store.alert_timeline(tenant, alert.id)
    assert [(e.action, e.actor) for e in timeline] == [
        ("raised", None),
        ("acknowledged", "ana@acme.example"),
        ("resolved", "bob@acme.example"),
    ]
    assert timeline[0].at <= timeline[1].at <= timeline[2].at
    messages = await outbox(store, TOPIC_ALERT)
    assert [(m["event"], m["alert"]["status"]) for m in messages] == [
        ("created", "open"),
        ("acknowledged", "acknowledged"),
        ("resolved", "resolved"),
    ]
    assert messages[-1]["alert"]["resolved_by"] == "bob@acme.example"


async def test_an_open_alert_can_be_resolved_directly(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    resolved = await store.resolve_alert(device.tenant_id, alert.id, by="ana@acme.example")
    assert resolved is not None
    assert (resolved.status, resolved.acknowledged_at, resolved.resolution_note) == ("resolved", None, None)


async def test_unknown_alerts(store: Store) -> None:
    device = await add_device(store)
    assert await store.alert(device.tenant_id, 12345) is None
    assert await store.acknowledge_alert(device.tenant_id, 12345, by="ana") is None
    assert await store.resolve_alert(device.tenant_id, 12345, by="ana") is None
    assert await store.alert_timeline(device.tenant_id, 12345) == []


async def test_timeline_lines_added_later(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    await store.add_alert_event(alert.id, action="notified", actor=None, detail={"channel": "email", "attempts": 2})
    await store.add_alert_event(
        alert.id, action="notification_failed", actor="smtp", detail={"error": "timeout", "nested": {"a": [1, 2]}}
    )
    timeline = await store.alert_timeline(device.tenant_id, alert.id)
    assert [(e.action, e.actor, e.detail) for e in timeline[1:]] == [
        ("notified", None, {"channel": "email", "attempts": 2}),
        ("notification_failed", "smtp", {"error": "timeout", "nested": {"a": [1, 2]}}),
    ]


async def test_alerts_newest_first_with_cursor_and_filters(store: Store) -> None:
    first = await add_device(store)
    second = await add_device(store, OTHER_IMEI, name="Bob")
    ids = []
    for n in range(1, 8):
        alert = await raised_alert(
            store, first if n % 2 else second, n, kind=AlarmKind.SOS if n < 5 else AlarmKind.FALL
        )
        ids.append(alert.id)
    tenant = first.tenant_id
    await store.acknowledge_alert(tenant, ids[0], by="ana")
    await store.resolve_alert(tenant, ids[1], by="ana")

    assert [a.id for a in await store.alerts(tenant)] == ids[::-1]
    walked: list[int] = []
    before: int | None = None
    while page := await store.alerts(tenant, before_id=before, limit=3):
        assert len(page) <= 3
        walked += [a.id for a in page]
        before = page[-1].id
    assert walked == ids[::-1]

    assert [a.id for a in await store.alerts(tenant, status="open")] == ids[:1:-1]
    assert [a.id for a in await store.alerts(tenant, status="acknowledged")] == [ids[0]]
    assert [a.id for a in await store.alerts(tenant, status="resolved")] == [ids[1]]
    assert [a.id for a in await store.alerts(tenant, imei=OTHER_IMEI)] == [ids[5], ids[3], ids[1]]
    assert [a.id for a in await store.alerts(tenant, imei=OTHER_IMEI, status="open")] == [ids[5], ids[3]]
    assert [a.id for a in await store.alerts(tenant, status="open", before_id=ids[5], limit=2)] == [ids[4], ids[3]]
    assert await store.alerts(tenant, imei="000000000000000") == []


# -- contacts and notifications ------------------------------------------------------------


async def test_contacts(store: Store) -> None:
    tenant = await store.ensure_tenant("acme")
    ana = await store.add_contact(
        tenant_id=tenant, name="Ana", email="ana@acme.example", phone="+33612345678", kinds=("sos", "fall")
    )
    bob = await store.add_contact(tenant_id=tenant, name="Bob", email=None, phone="+33698765432", kinds=())
    assert (ana.tenant_id, ana.name, ana.email, ana.phone, ana.kinds) == (
        tenant,
        "Ana",
        "ana@acme.example",
        "+33612345678",
        ("sos", "fall"),
    )
    assert (bob.email, bob.kinds) == (None, ())
    assert await store.contacts(tenant) == [ana, bob]
    assert await store.delete_contact(tenant, ana.id) is True
    assert await store.delete_contact(tenant, ana.id) is False
    assert await store.contacts(tenant) == [bob]


async def test_claim_notification_has_exactly_one_winner(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    contact = await store.add_contact(
        tenant_id=device.tenant_id, name="Ana", email="ana@acme.example", phone=None, kinds=("sos",)
    )
    key = NotificationKey(alert.id, contact.id, "email", 1)

    claims = await asyncio.gather(*(store.claim_notification(**key._asdict()) for _ in range(50)))
    assert claims.count(True) == 1
    assert await store.claim_notification(**key._asdict()) is False
    # Another channel, step or contact is another notification.
    for other in (key._replace(channel="sms"), key._replace(step=2), key._replace(contact_id=contact.id + 1)):
        assert await store.claim_notification(**other._asdict()) is True


async def test_notification_records_and_recovery(store: Store) -> None:
    if not isinstance(store, NotificationRecovery):
        pytest.skip("this store does not offer NotificationRecovery")
    device = await add_device(store)
    alert = await raised_alert(store, device)
    tenant = device.tenant_id
    keys = [NotificationKey(alert.id, contact_id, "email", 1)._asdict() for contact_id in (1, 2, 3)]
    for key in keys:
        assert await store.claim_notification(**key)
    await store.finish_notification(**keys[0], status="sent", attempts=1)
    await store.finish_notification(**keys[1], status="interrupted", attempts=2, error="draining")

    records = await store.notifications_of(tenant, alert.id)
    assert [(r.contact_id, r.status, r.attempts, r.error, r.tenant_id) for r in records] == [
        (1, "sent", 1, None, tenant),
        (2, "interrupted", 2, "draining", tenant),
        (3, "claimed", 0, None, tenant),
    ]

    # Interrupted ones always; claimed ones once nobody touched them since `stale_before`.
    assert [r.contact_id for r in await store.unfinished_notifications(stale_before=time.time() - 60)] == [2]
    unfinished = await store.unfinished_notifications(stale_before=time.time() + 60)
    assert [r.contact_id for r in unfinished] == [3, 2]  # oldest first: 3 was last touched when claimed

    [stale] = [r for r in unfinished if r.contact_id == 3]
    wins = await asyncio.gather(*(store.reclaim_notification(stale) for _ in range(20)))
    assert wins.count(True) == 1
    # A sender that touched its claim after it was listed keeps it.
    [interrupted] = [r for r in unfinished if r.contact_id == 2]
    await store.finish_notification(**keys[1], status="claimed", attempts=3)
    assert await store.reclaim_notification(interrupted) is False


# -- tenant isolation --------------------------------------------------------------------


async def test_a_tenant_reads_nothing_of_another(store: Store) -> None:
    ours = await add_device(store, tenant="acme")
    theirs = await add_device(store, OTHER_IMEI, tenant="globex", name="Gus")
    our_alert = await raised_alert(store, ours)
    their_alert = await raised_alert(store, theirs)
    our_contact = await store.add_contact(
        tenant_id=ours.tenant_id, name="Ana", email="ana@acme.example", phone=None, kinds=()
    )
    await store.add_contact(tenant_id=theirs.tenant_id, name="Gus", email="gus@globex.example", phone=None, kinds=())
    await store.create_api_key(tenant_id=theirs.tenant_id, name="k", prefix="sw_1", key_hash=b"g" * 32, role="admin")
    await store.claim_notification(alert_id=their_alert.id, contact_id=1, channel="email", step=1)
    us = ours.tenant_id

    assert [d.imei for d in await store.devices(us)] == [IMEI]
    assert [a.id for a in await store.alerts(us)] == [our_alert.id]
    assert await store.alerts(us, imei=OTHER_IMEI) == []
    assert await store.alert(us, their_alert.id) is None
    assert await store.alert_timeline(us, their_alert.id) == []
    assert await store.acknowledge_alert(us, their_alert.id, by="ana") is None
    assert await store.resolve_alert(us, their_alert.id, by="ana") is None
    assert (await store.alert(theirs.tenant_id, their_alert.id)).status == "open"  # type: ignore[union-attr]
    assert [c.name for c in await store.contacts(us)] == ["Ana"]
    assert await store.delete_contact(theirs.tenant_id, our_contact.id) is False
    assert [c.name for c in await store.contacts(us)] == ["Ana"]
    assert await store.api_keys(us) == []
    if isinstance(store, NotificationRecovery):
        assert await store.notifications_of(us, their_alert.id) == []


# -- delivery status of notifications (SMS through Twilio) -------------------------------------


async def delivery_lines(store: Store, alert: Alert) -> list[dict[str, Any]]:
    return [e.detail for e in await store.alert_timeline(alert.tenant_id, alert.id) if e.action == "delivery_status"]


async def test_delivery_status_reaches_the_notification_with_that_provider_id(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    ana = await store.add_contact(tenant_id=device.tenant_id, name="Ana", email=None, phone="+33612345678", kinds=())
    key = NotificationKey(alert.id, ana.id, "sms", 1)._asdict()
    assert await store.claim_notification(**key)
    await store.finish_notification(**key, status="sent", attempts=1, provider_id="SM0001")

    assert await store.record_delivery_status(provider_id="SM0001", status="sent", error_code=None) == alert.id
    assert (
        await store.record_delivery_status(provider_id="SM0001", status="undelivered", error_code="30003") == alert.id
    )
    assert await delivery_lines(store, alert) == [
        {"status": "sent", "channel": "sms", "contact_id": ana.id, "contact": "Ana", "provider_id": "SM0001"},
        {
            "status": "undelivered",
            "channel": "sms",
            "contact_id": ana.id,
            "contact": "Ana",
            "provider_id": "SM0001",
            "error_code": "30003",
        },
    ]
    if isinstance(store, NotificationRecovery):  # the send's own outcome stands
        [record] = await store.notifications_of(device.tenant_id, alert.id)
        assert (record.status, record.attempts, record.error) == ("sent", 1, None)


async def test_repeated_late_and_unknown_delivery_statuses_change_nothing(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    key = NotificationKey(alert.id, 7, "sms", 1)._asdict()  # a contact deleted since: its history stays
    assert await store.claim_notification(**key)
    await store.finish_notification(**key, status="sent", attempts=2, provider_id="SM0002")
    other = NotificationKey(alert.id, 8, "sms", 1)._asdict()
    assert await store.claim_notification(**other)
    await store.finish_notification(**other, status="failed", attempts=1, error="invalid number")

    for status in ("queued", "queued", "delivered", "sent", "delivered"):  # Twilio retries, and may be late
        assert await store.record_delivery_status(provider_id="SM0002", status=status, error_code=None) == alert.id
    assert [(d["status"], d["contact_id"], "contact" in d) for d in await delivery_lines(store, alert)] == [
        ("queued", 7, False),
        ("delivered", 7, False),
    ]
    assert await store.record_delivery_status(provider_id="SM-unknown", status="delivered", error_code=None) is None
    assert len(await delivery_lines(store, alert)) == 2


async def test_concurrent_delivery_statuses_are_each_recorded_once(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    key = NotificationKey(alert.id, 1, "sms", 1)._asdict()
    assert await store.claim_notification(**key)
    await store.finish_notification(**key, status="sent", attempts=1, provider_id="SM0003")
    await asyncio.gather(
        *(store.record_delivery_status(provider_id="SM0003", status="delivered", error_code=None) for _ in range(10))
    )
    assert [d["status"] for d in await delivery_lines(store, alert)] == ["delivered"]
