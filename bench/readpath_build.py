"""The big store `solewatch bench readpath` reads: built through the store's own write path.

Devices are registered with `add_device`, their history is committed with
`commit_telemetry` (the method the listener's committer calls) in big
batches, and alerts are raised from the stored ALARM frames with
`raise_alert_from_alarm` (what the notifications service calls for each
`alarm` outbox entry), most of them then resolved. Nothing goes over TCP.

The history has the shape a live fleet leaves: one POSITION every 30 s per
device, each its own run of one frame (a frame every 30 s is alone in its TCP
segment and in its commit), so a device's day is 2,880 rows spread over the
table among every other device's. A batch holds `TICKS_PER_COMMIT` rounds of
every device, which only makes the build faster (one commit per 20 minutes
of device time touches each device's index leaf once, not 40 times).

A store is kept in a directory with `readpath.json` describing it; a later
run with the same directory reuses it.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from shared.protocols.xsole import Alarm, Position
from shared.protocols.xsole.bulk import run_of_one
from shared.protocols.xsole.constants import FLAG_FIX_VALID, AlarmKind
from shared.store import hash_device_token
from shared.store.batch import DeviceAlarm, DeviceRef, DeviceRun, IngestBatch
from shared.store.sqlite import SqliteStore

INTERVAL_S = 30
TICKS_PER_COMMIT = 40  # 20 minutes of every device's history per commit
BYTES_PER_POSITION = 120  # on disk, row and index; measured ~100 on a built store (see the notes), with margin
DAY_S = 86_400
TENANT = "default"  # the tenant `solewatch run` makes its first admin in
META = "readpath.json"
_NEWEST_HISTORY_DAYS_AGO = 2  # the load generators send frames dated a day ago: after all of the history


@dataclass(frozen=True)
class StoreShape:
    """What a built store holds."""

    devices: int
    days: int
    start_ts: int  # midnight UTC of the history's first day
    positions_total: int
    alarms: int
    alerts_open: int
    build_seconds: float
    build_rows_per_s: float


def imei_of(index: int) -> str:
    return f"35{index:013d}"


def token_of(index: int) -> bytes:
    """A device's token, the same in every run, so a kept store's devices can still log in."""
    return hashlib.sha256(f"readpath device {index}".encode()).digest()[:16]


def credentials(devices: int) -> list[tuple[str, str]]:
    """(IMEI, token hex) of every device in a store of `devices`, as the load generators take them."""
    return [(imei_of(i), token_of(i).hex()) for i in range(devices)]


def load_shape(store_dir: Path) -> StoreShape | None:
    meta = store_dir / META
    if not meta.exists() or not (store_dir / "solewatch.db").exists():
        return None
    return StoreShape(**orjson.loads(meta.read_bytes()))


def store_bytes(store_dir: Path) -> int:
    return sum(path.stat().st_size for path in store_dir.glob("solewatch.db*"))


def check_disk(store_dir: Path, devices: int, days: int) -> None:
    """Refuse to start a build the disk cannot hold (with room to spare for the others on it)."""
    need = devices * days * (DAY_S // INTERVAL_S) * BYTES_PER_POSITION
    free = shutil.disk_usage(store_dir).free
    say(f"disk: {free / 1e9:.1f} GB free at {store_dir}, the store needs about {need / 1e9:.1f} GB")
    if free < 2 * need:
        raise SystemExit(f"readpath: not enough disk at {store_dir} for {devices} devices × {days} days")


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _position(index: int, tick: int, ts: int) -> Position:
    # Each worker walks around their own spot of a site near Toulouse; the battery runs down over the day.
    lat = 436_000_000 + (index % 100) * 20_000 + (tick % 720) * 37
    lon = 14_400_000 + (index // 100) * 20_000 + (tick % 360) * 53
    battery = 100 - (ts % DAY_S) * 80 // DAY_S
    return Position(tick & 0xFFFF, ts, lat, lon, 150, 120, (tick * 7) % 3600, 9, 8, battery, FLAG_FIX_VALID)


def _alarm(index: int, tick: int, ts: int) -> Alarm:
    kind = (AlarmKind.SOS, AlarmKind.FALL, AlarmKind.NO_MOTION, AlarmKind.LOW_BATTERY)[tick % 4]
    position = _position(index, tick, ts)
    return Alarm((tick + 1) & 0xFFFF, ts, kind, position.lat_e7, position.lon_e7, position.battery, FLAG_FIX_VALID)


async def build(store_dir: Path, *, devices: int, days: int, alarms: int) -> StoreShape:
    """Build the store in `store_dir` (which must not hold one yet)."""
    if (store_dir / "solewatch.db").exists():  # without readpath.json: not ours, or a build cut short
        raise SystemExit(f"readpath: {store_dir} holds a store this bench did not finish building; use another --store")
    store_dir.mkdir(parents=True, exist_ok=True)
    check_disk(store_dir, devices, days)
    start_ts = (int(time.time()) // DAY_S - _NEWEST_HISTORY_DAYS_AGO - days) * DAY_S
    ticks = days * DAY_S // INTERVAL_S
    alarm_every = max(1, devices * ticks // max(alarms, 1))  # one alarm per this many positions, fleet-wide
    store = SqliteStore(store_dir / "solewatch.db", synchronous="NORMAL")
    await store.open()
    try:
        tenant_id = await store.ensure_tenant(TENANT)
        refs = []
        for i in range(devices):
            device = await store.add_device(
                tenant_id=tenant_id, imei=imei_of(i), name=f"worker {i}", token_hash=hash_device_token(token_of(i))
            )
            refs.append(DeviceRef(device.id, tenant_id, device.imei))
        say(f"build: {devices:,} devices registered; {devices * ticks:,} positions to commit ({days} days)")
        started = time.perf_counter()
        done = 0
        for first in range(0, ticks, TICKS_PER_COMMIT):
            runs: list[DeviceRun] = []
            device_alarms: list[DeviceAlarm] = []
            for tick in range(first, min(first + TICKS_PER_COMMIT, ticks)):
                ts = start_ts + tick * INTERVAL_S
                for i, ref in enumerate(refs):
                    runs.append(DeviceRun(ref, run_of_one(_position(i, tick, ts)), ts + 0.5))
                    if (tick * devices + i) % alarm_every == alarm_every - 1:
                        device_alarms.append(DeviceAlarm(ref, _alarm(i, tick, ts), ts + 0.5))
            await store.commit_telemetry(IngestBatch(tuple(runs), tuple(device_alarms)))
            done += len(runs)
            elapsed = time.perf_counter() - started
            rate = done / elapsed
            if (first // TICKS_PER_COMMIT) % 10 == 0 or done == devices * ticks:
                eta = (devices * ticks - done) / rate
                say(f"build: {done:,} positions, {rate:,.0f} rows/s, ETA {eta:,.0f} s")
        build_seconds = time.perf_counter() - started
        alerts_open = await _raise_alerts(store, tenant_id)
    finally:
        await store.close()
    shape = StoreShape(
        devices=devices,
        days=days,
        start_ts=start_ts,
        positions_total=devices * ticks,
        alarms=alarms,
        alerts_open=alerts_open,
        build_seconds=round(build_seconds, 1),
        build_rows_per_s=round(devices * ticks / build_seconds),
    )
    (store_dir / META).write_bytes(orjson.dumps(asdict(shape), option=orjson.OPT_INDENT_2))
    return shape


async def _raise_alerts(store: SqliteStore, tenant_id: int) -> int:
    """An alert per stored ALARM, as the notifications service raises them; all but the newest few
    dozen resolved, as a supervisor leaves them. Then the outbox is emptied: the history is old news,
    and `solewatch run` would otherwise replay every commit's telemetry to detection and dashboards."""
    raised = []
    after = 0
    while entries := await store.outbox_pending(1000, after_id=after):
        for entry in entries:
            if entry.topic == "alarm":
                alert, _ = await store.raise_alert_from_alarm(orjson.loads(entry.payload))
                raised.append(alert.id)
        after = entries[-1].id
    keep_open = 40
    for alert_id in raised[:-keep_open]:
        await store.resolve_alert(tenant_id, alert_id, by="bench supervisor", note="checked on site")
    after = 0
    while entries := await store.outbox_pending(1000, after_id=after):
        await store.outbox_remove([entry.id for entry in entries])
        after = entries[-1].id
    say(f"build: {len(raised):,} alerts raised, {min(keep_open, len(raised))} left open")
    return min(keep_open, len(raised))
