"""`kill -9` of `solewatch run` while GT06, H02, watch and Teltonika devices stream (issue 18, CONTRACT §10).

Every packet a device saw acknowledged must be stored after the restart, once; the packets it had
not seen answered, resent after the restart as devices do, are stored once too (some were stored
before the kill), and so is its SOS, resent too: one alarm, one alert.

The watch protocol acknowledges no position (UD packets get no reply), so its positions are only
known durable through the heartbeat sent after them: the server answers a watch's `LK` once it and
everything before it on the connection is durable (replies keep the packets' order). Its stream is
therefore two positions then an `LK`, and the positions before an answered `LK` count as acknowledged.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.process import SolewatchProcess, free_port
from tests.helpers.stored import frames_on_disk
from tests.helpers.trackers import LAT, LON, TRACKERS, TrackerClient, imei_for

pytestmark = pytest.mark.slow

WINDOW = 8  # packets in flight per device: the kill finds some unacknowledged
ACKED_BEFORE_KILL = 40  # acknowledged packets per device before the kill


@dataclass
class Stream:
    """What one device sent and saw acknowledged."""

    protocol: str
    imei: str
    sos: bytes = b""  # the SOS packet it sent first (resent after the restart)
    sos_ts: int = 0
    acked_positions: set[int] = field(default_factory=set)  # device times
    acked_heartbeats: int = 0
    # The packets unanswered when the connection died, each with what its answer acknowledges.
    unanswered: list[tuple[bytes, list[int | None]]] = field(default_factory=list)


async def stream_until_cut(port: int, stream: Stream, ready: asyncio.Event, base_ts: int) -> None:
    """Log in, send an SOS, then positions (and heartbeats) from `base_ts` on with up to WINDOW
    unanswered, until the connection dies; note what each answer acknowledges."""
    client = await TrackerClient.connect(port, stream.protocol, stream.imei)
    await client.log_in()
    stream.sos_ts = int(time.time()) - 5
    stream.sos = client.sos(stream.sos_ts)
    await client.send(stream.sos)
    [answer] = await client.receive()
    assert answer.kind == "ack", answer
    # Each entry: the packets one answer acknowledges, and what they carry (positions' device times;
    # None: a heartbeat).
    in_flight: deque[tuple[bytes, list[int | None]]] = deque()
    n = 0
    try:
        while True:
            while len(in_flight) < WINDOW:
                n += 1
                ts = base_ts + n
                if client.device.acks_positions:
                    packets, carried = client.position(ts, LAT + n, LON), [ts]
                else:
                    second = client.position(ts + 10**5, LAT, LON + n)
                    packets = client.position(ts, LAT + n, LON) + second + client.heartbeat(ts)
                    carried = [ts, ts + 10**5, None]
                await client.send(packets)
                in_flight.append((packets, carried))
            [answer] = await client.receive(timeout=10)
            assert answer.kind == "ack", answer
            note_acknowledged(stream, in_flight.popleft()[1])
            if len(stream.acked_positions) >= ACKED_BEFORE_KILL:
                ready.set()
    except (ConnectionError, TimeoutError, OSError):
        stream.unanswered = list(in_flight)


def note_acknowledged(stream: Stream, carried: list[int | None]) -> None:
    for acked in carried:
        if acked is None:
            stream.acked_heartbeats += 1
        else:
            stream.acked_positions.add(acked)


async def resend_after_restart(port: int, stream: Stream) -> None:
    """What a device does when it reconnects: resend its SOS (it may not have seen the answer) and
    every packet left unanswered, until they are answered."""
    client = await TrackerClient.connect(port, stream.protocol, stream.imei)
    await client.log_in()
    await client.send(stream.sos, *(packets for packets, _ in stream.unanswered))
    answers = await client.receive(1 + len(stream.unanswered))
    assert all(answer.kind == "ack" for answer in answers), answers
    for _, carried in stream.unanswered:
        note_acknowledged(stream, carried)
    await client.close()


async def test_kill_9_mid_stream_loses_no_acknowledged_packet_and_a_resent_sos_is_one_alert(tmp_path: Path):
    data_dir = tmp_path / "data"
    ports = {protocol: free_port() for protocol in TRACKERS}
    env = {f"SOLEWATCH_{protocol.upper()}_PORT": str(port) for protocol, port in ports.items()}
    streams = [Stream(protocol, imei_for(protocol, 77)) for protocol in TRACKERS]

    first = SolewatchProcess(data_dir, "run", log_path=tmp_path / "run1.log", env=env)
    first.start()
    try:
        added = await asyncio.gather(
            *(
                asyncio.to_thread(first.cli, "devices", "add", s.imei, "--name", s.protocol, "--protocol", s.protocol)
                for s in streams
            )
        )
        assert all(a.returncode == 0 for a in added), [a.stderr for a in added]
        # Device times in the past (never in the future, which is refused), apart per device: 11 days each.
        base_ts = int(time.time()) - 60 * 86400
        ready = [asyncio.Event() for _ in streams]
        tasks = [
            asyncio.create_task(stream_until_cut(ports[s.protocol], s, r, base_ts + 10**6 * i))
            for i, (s, r) in enumerate(zip(streams, ready, strict=True))
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
        first.kill()  # mid-stream: packets are in flight on every connection
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
        assert any(s.unanswered for s in streams), "the kill found no packet in flight"
    finally:
        first.stop_quietly()

    second = SolewatchProcess(data_dir, "run", log_path=tmp_path / "run2.log", env=env)
    second.start()
    try:
        await asyncio.gather(*(resend_after_restart(ports[s.protocol], s) for s in streams))
        deadline = time.monotonic() + 15
        with sqlite3.connect(data_dir / "solewatch.db") as db:
            while db.execute("SELECT count(*) FROM outbox").fetchone()[0] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
    finally:
        assert second.terminate() == 0

    db = sqlite3.connect(data_dir / "solewatch.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = dict(db.execute("SELECT imei, id FROM devices"))
    stored: Counter[tuple[int, str, int]] = Counter()
    for (device_id, kind, ts, _seq), rows in frames_on_disk(data_dir / "solewatch.db").items():
        stored[(device_id, kind, ts)] += rows
    for stream in streams:
        device_id = ids[stream.imei]
        assert len(stream.acked_positions) >= ACKED_BEFORE_KILL
        for ts in stream.acked_positions:
            rows = stored[(device_id, "positions", ts)]
            assert rows == 1, f"{stream.protocol}: acknowledged position at {ts} stored {rows} times"
        if stream.acked_heartbeats:
            # An LK carries no time: the server dates it on receipt, and identical LKs within one second
            # are one heartbeat (their seq is drawn from time and battery). So: some, never more than sent.
            heartbeats = sum(rows for (d, kind, _), rows in stored.items() if d == device_id and kind == "heartbeats")
            assert 1 <= heartbeats <= stream.acked_heartbeats + WINDOW, stream.protocol
        alarms = db.execute(
            "SELECT count(*) FROM alarms WHERE device_id = ? AND device_ts = ?", (device_id, stream.sos_ts)
        ).fetchone()[0]
        assert alarms == 1, f"{stream.protocol}: the SOS sent twice is stored {alarms} times"
        alerts = db.execute("SELECT kind FROM alerts WHERE device_id = ?", (device_id,)).fetchall()
        assert alerts == [("sos",)], f"{stream.protocol}: {alerts}"
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
