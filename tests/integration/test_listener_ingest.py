"""Contract §1 rules 2, 3 and 5: what gets stored, when it is ACKed, and with which status.

Every test drives the real listener over TCP with the real SQLite store; the
store is checked through its own reads, or a fresh sqlite3 connection where
durability is the point.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.bus.port import Message
from shared.http import HttpServer
from shared.protocols.xsole import Ack, Login, LoginAck, encode
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID
from shared.store.port import StoreUnavailable
from tests.conftest import embedded_settings
from tests.helpers.stored import count_stored, frames_on_disk

IMEI = "356307042441013"


@pytest.fixture
def solewatch_settings(request, tmp_path):
    """Default settings, or the overrides a test passes by indirect parametrization."""
    return embedded_settings(tmp_path / "data", **getattr(request, "param", {}))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll `check` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def counts(solewatch, imei: str = IMEI) -> dict[str, int]:
    device = await solewatch.store.device_by_imei(imei)
    return await count_stored(solewatch.store, device.id)


async def stored_seqs(solewatch, imei: str = IMEI) -> list[int]:
    device = await solewatch.store.device_by_imei(imei)
    return sorted(row.seq for row in await solewatch.store.positions(device.id, limit=1000))


def alarm_recorder(solewatch) -> list[dict]:
    """Every `alarm` message the in-process bus delivers from now on."""
    bus = solewatch.listener.bus
    received: list[dict] = []

    async def record(message: Message) -> None:
        received.append(orjson.loads(message.payload))

    bus.subscribe("test", ["alarm"], record)
    return received


async def outbox_drained(solewatch) -> bool:
    # The relay removes an entry only after the bus has delivered it.
    return not await solewatch.store.outbox_pending(10)


# -- rule 5: values out of range ---------------------------------------------------------------


async def test_out_of_range_positions_get_ack_1_and_are_not_stored(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    now = int(time.time())
    cases = {
        "lat above 90": {"lat_e7": 900_000_001},
        "lat below -90": {"lat_e7": -900_000_001},
        "lon above 180": {"lon_e7": 1_800_000_001},
        "lon below -180": {"lon_e7": -1_800_000_001},
        "course 3600": {"course_ddeg": 3600},
        "course 65535": {"course_ddeg": 65535},
        "battery 101": {"battery": 101},
        "battery 255": {"battery": 255},
        "ts 6 minutes ahead": {"ts": now + 360},
    }
    refused = {name: device.position(**fields) for name, fields in cases.items()}
    good = device.position()

    await device.send(*refused.values(), good)

    acks = dict(await device.recv_ack_list(len(refused) + 1))
    assert {name: acks[p.seq] for name, p in refused.items()} == dict.fromkeys(cases, 1)
    assert acks[good.seq] == 0
    assert await stored_seqs(solewatch) == [good.seq]


async def test_out_of_range_heartbeats_and_activities_get_ack_1_and_are_not_stored(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    ahead = int(time.time()) + 360
    refused = [
        device.heartbeat(battery=101),
        device.heartbeat(ts=ahead),
        device.activity(battery=101),
        device.activity(ts=ahead),
        device.activity(state=6),
    ]
    good = [device.heartbeat(), device.activity()]

    await device.send(*refused, *good)

    acks = dict(await device.recv_ack_list(len(refused) + len(good)))
    assert acks == {f.seq: 1 for f in refused} | {f.seq: 0 for f in good}
    assert await counts(solewatch) == {"positions": 0, "heartbeats": 1, "activities": 1, "alarms": 0}


async def test_values_exactly_at_the_limits_are_stored(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    now = int(time.time())  # the listener's clock reads at least this when it checks
    limits = [
        {"lat_e7": 900_000_000},
        {"lat_e7": -900_000_000},
        {"lon_e7": 1_800_000_000},
        {"lon_e7": -1_800_000_000},
        {"course_ddeg": 3599},
        {"course_ddeg": 0},
        {"battery": 100},
        {"battery": 0},
        {"ts": now + 300},
    ]
    positions = [device.position(**fields) for fields in limits]

    await device.send(*positions)

    assert await device.recv_ack_list(len(positions)) == [(p.seq, 0) for p in positions]
    assert await stored_seqs(solewatch) == [p.seq for p in positions]


# -- rules 2 and 3: ACK 0 once durable, retransmissions stored once ------------------------------


@pytest.mark.parametrize(
    "kind, table",
    [
        ("position", "positions"),
        ("heartbeat", "heartbeats"),
        ("activity", "activities"),
    ],
)
async def test_retransmitted_frame_is_acked_each_time_and_stored_once(solewatch, kind, table):
    device = await solewatch.logged_in_device(IMEI)
    frame = getattr(device, kind)()

    await device.send(frame)  # the ACK is "lost": the insole sends it again, twice
    assert await device.recv_ack_list(1) == [(frame.seq, 0)]
    await device.send(frame, frame)
    assert await device.recv_ack_list(2) == [(frame.seq, 0), (frame.seq, 0)]

    assert (await counts(solewatch))[table] == 1
    await device.close()


async def test_retransmitted_alarm_is_stored_once_and_raises_one_alert(solewatch):
    alerts = alarm_recorder(solewatch)
    token = await solewatch.register(IMEI)
    device = await solewatch.device()
    assert (await device.login(IMEI, token)).status == 0
    alarm = device.alarm(kind=2)

    await device.send(alarm)
    assert await device.recv_ack_list(1) == [(alarm.seq, 0)]
    await device.send(alarm)
    assert await device.recv_ack_list(1) == [(alarm.seq, 0)]
    # ...and once more after reconnecting, as firmware does when the link dropped.
    again = await solewatch.device()
    assert (await again.login(IMEI, token)).status == 0
    await again.send(alarm)
    assert await again.recv_ack_list(1) == [(alarm.seq, 0)]

    await eventually(lambda: outbox_drained(solewatch))
    assert (await counts(solewatch))["alarms"] == 1
    assert len(alerts) == 1
    assert alerts[0]["kind"] == "fall" and alerts[0]["imei"] == IMEI and alerts[0]["seq"] == alarm.seq
    assert (alerts[0]["lat"], alerts[0]["lon"]) == (pytest.approx(43.6163), pytest.approx(7.0553))
    await again.close()


async def test_alarm_with_out_of_range_fix_or_clock_is_stored_with_what_is_known(solewatch):
    alerts = alarm_recorder(solewatch)
    device = await solewatch.logged_in_device(IMEI)
    no_fix = device.alarm(kind=1, lat_e7=900_000_001, lon_e7=-1_800_000_001)
    clock_ahead = device.alarm(kind=3, ts=int(time.time()) + 3600)

    await device.send(no_fix, clock_ahead)

    assert await device.recv_ack_list(2) == [(no_fix.seq, 0), (clock_ahead.seq, 0)]
    await eventually(lambda: outbox_drained(solewatch))
    by_seq = {alert["seq"]: alert for alert in alerts}
    assert by_seq.keys() == {no_fix.seq, clock_ahead.seq}
    assert (by_seq[no_fix.seq]["kind"], by_seq[no_fix.seq]["lat"], by_seq[no_fix.seq]["lon"]) == ("sos", None, None)
    # A clock far ahead must not date the alert in the future: the receive time stands in.
    assert by_seq[clock_ahead.seq]["ts"] <= time.time() + 1
    assert (await counts(solewatch))["alarms"] == 2
    await device.close()


async def test_alarm_of_unknown_kind_gets_ack_1_and_is_not_stored(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    unknown = [device.alarm(kind=9), device.alarm(kind=0)]
    later = device.alarm(kind=1)

    await device.send(*unknown, later)

    assert await device.recv_ack_list(3) == [(unknown[0].seq, 1), (unknown[1].seq, 1), (later.seq, 0)]
    assert (await counts(solewatch))["alarms"] == 1
    await device.close()


async def test_ack_0_means_the_frame_is_already_on_disk(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    frames = {
        "positions": device.position(),
        "heartbeats": device.heartbeat(),
        "activities": device.activity(),
    }
    alarm = device.alarm()

    for kind, frame in frames.items():
        await device.send(frame)
        assert await device.recv_ack_list(1) == [(frame.seq, 0)]
        # Nothing awaited in between: the frame must be there for any other reader already.
        on_disk = frames_on_disk(solewatch.settings.sqlite_path)
        assert [n for (_, k, ts, seq), n in on_disk.items() if (k, ts, seq) == (kind, frame.ts, frame.seq)] == [1]
    await device.send(alarm)
    assert await device.recv_ack_list(1) == [(alarm.seq, 0)]
    assert _rows_on_disk(solewatch, "SELECT count(*) FROM alarms WHERE seq = ?", alarm.seq) == 1
    await device.close()


def _rows_on_disk(solewatch, sql: str, *params: object) -> int:
    db = sqlite3.connect(solewatch.settings.sqlite_path)
    try:
        return db.execute(sql, params).fetchone()[0]
    finally:
        db.close()


# -- buffered frames -------------------------------------------------------------------------------


async def test_buffered_older_positions_are_stored_but_do_not_replace_the_last_position(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    now = int(time.time())
    live = device.position(ts=now, lat_e7=436_000_000, flags=FLAG_FIX_VALID)
    buffered = [
        device.position(ts=now - 3600, lat_e7=435_000_000, flags=FLAG_FIX_VALID | FLAG_BUFFERED),
        device.position(ts=now - 1800, lat_e7=435_500_000, flags=FLAG_FIX_VALID | FLAG_BUFFERED),
    ]

    await device.send(live)
    assert await device.recv_ack_list(1) == [(live.seq, 0)]
    await device.send(*buffered)
    assert await device.recv_ack_list(2) == [(p.seq, 0) for p in buffered]

    assert await stored_seqs(solewatch) == sorted(p.seq for p in [live, *buffered])
    state = await solewatch.store.device_by_imei(IMEI)
    assert (state.last_fix_ts, state.last_lat_e7) == (now, 436_000_000)

    newer = device.position(ts=now + 1, lat_e7=436_100_000)
    await device.send(newer)
    assert await device.recv_ack_list(1) == [(newer.seq, 0)]
    state = await solewatch.store.device_by_imei(IMEI)
    assert (state.last_fix_ts, state.last_lat_e7) == (now + 1, 436_100_000)
    await device.close()


async def test_buffered_older_frame_does_not_replace_the_current_battery(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    now = int(time.time())
    live = device.heartbeat(ts=now, battery=40)
    old = device.position(ts=now - 3600, battery=95, flags=FLAG_FIX_VALID | FLAG_BUFFERED)

    await device.send(live)
    assert await device.recv_ack_list(1) == [(live.seq, 0)]
    await device.send(old)
    assert await device.recv_ack_list(1) == [(old.seq, 0)]

    assert (await solewatch.store.device_by_imei(IMEI)).battery == 40
    await device.close()


# -- backpressure and store failures ------------------------------------------------------------


@pytest.mark.parametrize("solewatch_settings", [{"max_unacked_per_connection": 8}], indirect=True, ids=["window=8"])
async def test_small_ack_window_loses_no_frame(solewatch, monkeypatch):
    store = solewatch.store
    batch_sizes: list[int] = []
    commit = store.commit_telemetry

    async def recording_commit(telemetry):
        batch_sizes.append(telemetry.frames)
        await commit(telemetry)

    monkeypatch.setattr(store, "commit_telemetry", recording_commit)
    device = await solewatch.logged_in_device(IMEI)
    now = int(time.time())
    positions = [device.position(ts=now - 500 + i) for i in range(500)]

    await device.send(*positions)

    acks = await device.recv_ack_list(500, timeout=10)
    assert sorted(acks) == sorted((p.seq, 0) for p in positions)
    assert (await counts(solewatch))["positions"] == 500
    assert max(batch_sizes) <= 8  # one connection never has more than its window in flight
    await device.close()


async def test_store_failure_gets_ack_4_and_the_retransmission_is_stored_once(solewatch, monkeypatch):
    store = solewatch.store
    commit = store.commit_telemetry
    failures = [StoreUnavailable("disk I/O error")]

    async def failing_once(telemetry):
        if failures:
            raise failures.pop()
        await commit(telemetry)

    device = await solewatch.logged_in_device(IMEI)
    monkeypatch.setattr(store, "commit_telemetry", failing_once)
    position = device.position()

    await device.send(position)
    assert await device.recv_ack_list(1) == [(position.seq, 4)]
    assert (await counts(solewatch))["positions"] == 0

    await device.send(position)
    assert await device.recv_ack_list(1) == [(position.seq, 0)]
    await device.send(position)
    assert await device.recv_ack_list(1) == [(position.seq, 0)]
    assert await stored_seqs(solewatch) == [position.seq]
    await device.close()


# -- /metrics ---------------------------------------------------------------------------------


async def scrape(solewatch) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    http = next(c for c in solewatch.runtime.components if isinstance(c, HttpServer))
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{http.port}/metrics")
    response.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def grew(before: dict, after: dict, name: str, **labels: str) -> float:
    """How much a sample grew (the registry is process-wide, so tests compare deltas)."""
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_metrics_count_stored_frames_and_logins(solewatch):
    before = await scrape(solewatch)
    device = await solewatch.logged_in_device(IMEI)
    frames = [device.position(), device.heartbeat(), device.activity()]
    await device.send(*frames)
    assert await device.recv_ack_list(3) == [(f.seq, 0) for f in frames]
    stranger = await solewatch.device()
    await stranger.send(Login(1, "356307042441021", 0x0102, bytes(16)))
    assert await stranger.frames_until_closed() == [LoginAck(1, 1, pytest.approx(time.time(), abs=5))]

    after = await scrape(solewatch)

    assert grew(before, after, "listener_frames_stored_total") == 3
    assert grew(before, after, "listener_logins_total", protocol="xsole", result="accepted") == 1
    assert grew(before, after, "listener_logins_total", protocol="xsole", result="unknown_device") == 1
    assert grew(before, after, "listener_acks_sent_total", status="stored") == 3
    await device.close()


async def test_metrics_count_bad_crc_frames(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    before = await scrape(solewatch)
    frame = bytearray(encode(device.position()))
    frame[-1] ^= 0xFF  # CRC no longer matches
    good = device.position()
    await device.send(bytes(frame), good)
    assert await device.recv_ack_list(1) == [(good.seq, 0)]

    after = await scrape(solewatch)

    assert grew(before, after, "listener_bad_frames_total", protocol="xsole") == 1
    await device.close()


async def test_metrics_tell_a_frame_before_login_from_a_refused_login(solewatch):
    before = await scrape(solewatch)
    device = await solewatch.device()
    heartbeat = device.heartbeat()
    await device.send(heartbeat)
    assert await device.frames_until_closed() == [Ack(heartbeat.seq, 3)]

    after = await scrape(solewatch)

    assert grew(before, after, "listener_connections_closed_total", reason="before_login") == 1
