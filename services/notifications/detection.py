"""Server-side danger detection: telemetry in, detected alerts out.

Consumes `telemetry` messages (each commit's newest frame of each kind per
device) and feeds those frames to the detectors (services/notifications/detectors/),
keeping each device's states, one per detector, under one cache key (shared
by every notifications process, so competing consumers see one state; one
read and one write per device and message keeps this cheap beside ingestion
in the all-in-one process), and applies what they detect: a raise becomes an alert keyed
by condition and device (raised once however often it is detected), a clear
resolves it. Silence has no frame: one process at a time (a lease in the
cache) checks every device's offline state on a clock.

ALARM frames are not fed here: the alert engine already makes one alert of
each. Buffered or late frames raise nothing (the detectors' own rule).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import Counter, Histogram

from services.context import ServiceContext
from services.notifications.detectors import (
    Detection,
    GeofenceDetector,
    LowBatteryDetector,
    NoMotionDetector,
    OfflineDetector,
    ShiftWindow,
)
from services.notifications.detectors.frames import FrameKind, frame_ts, latest_telemetry_tables, make_frame
from shared.bus import Message
from shared.bus.outbox import CacheLease
from shared.bus.topics import TOPIC_TELEMETRY
from shared.config import Settings
from shared.logging import get_logger
from shared.store.detections import DetectedCondition
from shared.store.geofences import Geofence

log = get_logger("solewatch.detection")

detections_applied = Counter("detections_total", "Conditions detected on the server", ["kind", "action"])
flush_seconds = Histogram(
    "detection_flush_seconds",
    "How long judging the frames kept since the last flush took (the next waits 4x that, at least 0.5 s)",
    buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
)

STATE_TTL_S = 14 * 24 * 3600  # long: an expired state reads as "never seen", which raises nothing
GEOFENCES_CACHED_S = 30.0  # a new or deleted geofence applies within this long
SETTINGS_CACHED_S = 30.0  # and a device's changed settings within this long
COALESCE_S = 0.5  # a device's frames are judged at most this long after they arrive (while within budget)
# Detection's share of the process at most: after a flush that took D seconds the next one waits
# D * (1 / share - 1), so under a fleet's full load each device's newest frame is judged every few
# seconds instead of every frame, and ingestion (ACKs, SOS) keeps the rest of the process.
DETECTION_SHARE = 0.2
FRAMES_PER_SLICE = 64  # judged between turns of the event loop: a big flush must not stall ACKs
STARTUP_GRACE_S = 30.0  # let the consumer catch up on queued frames before calling anyone silent
CLEAR_NOTES = {
    "offline": "device back online",
    "no_motion": "the worker is moving again",
    "low_battery": "battery charged",
    "geofence_exit": "back inside the geofence",
    "geofence_enter": "left the geofence",
}


@dataclass(frozen=True, slots=True)
class DeviceOverrides:
    """A device's own detection settings, as the detectors take them (None: the default)."""

    offline_after: float | None
    shift: ShiftWindow | None


def state_key(device_id: int) -> str:
    return f"detect:{device_id}"


def load_states(stored: bytes | None) -> dict[str, bytes]:
    """A device's detector states by detector name (each detector's own bytes)."""
    if not stored:
        return {}
    return {name: state.encode() for name, state in orjson.loads(stored).items()}


def dump_states(states: dict[str, bytes | None]) -> bytes | None:
    kept = {name: state.decode() for name, state in states.items() if state is not None}
    return orjson.dumps(kept) if kept else None


def condition_key(detection: Detection) -> str:
    key = f"{detection.kind}:{detection.device_id}"
    geofence_id = detection.detail.get("geofence_id")
    return key if geofence_id is None else f"{key}:{geofence_id}"


class DetectionService:
    name = "detection"

    def __init__(self, context: ServiceContext):
        self._store = context.store
        self._cache = context.cache
        self._lease = CacheLease(context.cache, "offline-check:leader")
        self._geofences: dict[int, tuple[float, list[Geofence]]] = {}
        self._device_overrides: dict[int, tuple[float, DeviceOverrides]] = {}
        self._task: asyncio.Task[None] | None = None
        # Frame kind -> device id -> its newest row so far: (columns, row, the message's devices).
        self._pending: dict[FrameKind, dict[int, tuple[tuple[str, ...], list[Any], dict[str, list[Any]]]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._last_flush_s = 0.0
        self.configure(context.settings)
        context.bus.subscribe("detectors", [TOPIC_TELEMETRY], self.handle)

    def configure(self, settings: Settings) -> None:
        self.offline = OfflineDetector(settings.offline_after)
        self._detectors = (
            self.offline,
            NoMotionDetector(settings.no_motion_after),
            LowBatteryDetector(settings.low_battery_threshold),
            GeofenceDetector(),
        )
        # Often enough that an offline alert is at most a few percent late.
        self.check_interval = max(1.0, min(30.0, settings.offline_after / 20))

    # -- component --------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._check_silence(), name="offline-check")

    async def drain(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        try:
            await self.flush()
        except Exception:
            log.exception("detection_failed")
        await self.close()

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def reload(self, settings: Settings) -> None:
        self.configure(settings)

    async def check_ready(self) -> str | None:
        return None

    # -- frames -------------------------------------------------------------------------

    async def handle(self, message: Message) -> None:
        """Keep each device's newest frame of each kind; they are judged within COALESCE_S,
        or later when judging takes more than DETECTION_SHARE of the process.

        A device sending many frames a second is judged a few times a second,
        not once per frame: what the detectors decide on (a silence of
        minutes, a battery level, a crossing confirmed by fixes) does not
        change faster, and ingestion shares this process. A fleet big enough
        to make judging every frame cost more than that share (19,000 insoles
        at one frame a second: ~0.7 s per flush) has each device's newest
        frame judged every few seconds instead, so ACKs and alarms keep their
        share. A crash loses at most one interval of detection input, which
        the device's next frames make up for (no detection depends on one
        frame alone).
        """
        for table in latest_telemetry_tables(message.payload):
            pending = self._pending.setdefault(table.kind, {})
            ts_at, seq_at = table.columns.index("ts"), table.columns.index("seq")
            for device_id, row in table.newest.items():
                kept = pending.get(device_id)
                if kept is None or (row[ts_at], row[seq_at]) >= (kept[1][ts_at], kept[1][seq_at]):
                    pending[device_id] = (table.columns, row, table.devices)
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush_soon(), name="detection-flush")

    async def _flush_soon(self) -> None:
        while self._pending:  # frames handled during a flush (it yields) are judged by the next
            await asyncio.sleep(max(COALESCE_S, self._last_flush_s * (1 / DETECTION_SHARE - 1)))
            started = time.perf_counter()
            try:
                await self.flush()
            except Exception:  # a backend is away: these frames are not judged; the next ones are
                log.exception("detection_failed")
            self._last_flush_s = time.perf_counter() - started
            flush_seconds.observe(self._last_flush_s)

    async def flush(self) -> None:
        """Judge the frames kept so far, now."""
        pending, self._pending = self._pending, {}
        now = time.time()
        devices: dict[int, dict[str, bytes | None]] = {}  # device id -> its states, read once per flush
        frames = [
            make_frame(kind, columns, row, ids) for kind, rows in pending.items() for columns, row, ids in rows.values()
        ]
        for judged, frame in enumerate(sorted(frames, key=frame_ts), 1):
            if judged % FRAMES_PER_SLICE == 0:
                await asyncio.sleep(0)  # let the listener read and ACK between slices
            device_id = frame["device_id"]
            states = devices.get(device_id)
            if states is None:
                states = devices[device_id] = dict(load_states(await self._cache.get(state_key(device_id))))
            for detector in self._detectors:
                if frame["frame"] not in detector.frames:
                    continue
                extra: dict[str, Any] = {}
                if isinstance(detector, GeofenceDetector):
                    geofences = await self._tenant_geofences(frame["tenant_id"], now)
                    if not geofences and states.get(detector.name) is None:
                        continue  # a tenant without geofences: a device's first fix near one is where it starts
                    extra["geofences"] = geofences
                elif isinstance(detector, OfflineDetector):
                    extra["offline_after"] = (await self._overrides(device_id, now)).offline_after
                elif isinstance(detector, NoMotionDetector):
                    extra["shift"] = (await self._overrides(device_id, now)).shift
                states[detector.name], found = detector.observe(states.get(detector.name), frame, now=now, **extra)
                for detection in found:
                    await self._apply(detection)
        for device_id, states in devices.items():
            await self._store_states(device_id, states)

    async def _store_states(self, device_id: int, states: dict[str, bytes | None]) -> None:
        stored = dump_states(states)
        if stored is None:
            await self._cache.delete(state_key(device_id))
        else:
            await self._cache.set(state_key(device_id), stored, ttl=STATE_TTL_S)

    async def _overrides(self, device_id: int, now: float) -> DeviceOverrides:
        cached = self._device_overrides.get(device_id)
        if cached is None or now - cached[0] > SETTINGS_CACHED_S:
            settings = await self._store.device_settings(device_id)
            shift = settings.shift
            overrides = DeviceOverrides(
                settings.offline_after, ShiftWindow.of(shift["hours"], shift.get("timezone", "UTC")) if shift else None
            )
            cached = self._device_overrides[device_id] = (now, overrides)
        return cached[1]

    async def _tenant_geofences(self, tenant_id: int, now: float) -> list[Geofence]:
        cached = self._geofences.get(tenant_id)
        if cached is None or now - cached[0] > GEOFENCES_CACHED_S:
            cached = (now, await self._store.geofences(tenant_id))
            self._geofences[tenant_id] = cached
        return cached[1]

    async def _apply(self, detection: Detection) -> None:
        key = condition_key(detection)
        detections_applied.labels(detection.kind, detection.action).inc()
        if detection.action == "clear":
            cleared = await self._store.clear_detected_alert(key, note=CLEAR_NOTES.get(detection.kind, "cleared"))
            if cleared is not None:
                log.info("detected_alert_cleared", alert_id=cleared.id, kind=detection.kind, imei=detection.imei)
            return
        alert, created = await self._store.raise_detected_alert(
            DetectedCondition(
                key=key,
                tenant_id=detection.tenant_id,
                device_id=detection.device_id,
                imei=detection.imei,
                kind=detection.kind,
                ts=detection.ts,
                lat=detection.lat,
                lon=detection.lon,
                battery=detection.battery,
                detail=detection.detail,
            )
        )
        if created:
            log.warning("alert_detected", alert_id=alert.id, kind=alert.kind, imei=alert.imei, key=key)

    # -- silence ------------------------------------------------------------------------

    async def _check_silence(self) -> None:
        await asyncio.sleep(STARTUP_GRACE_S)
        while True:
            try:
                if await self._lease.held():
                    await self.check_offline(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:  # the store or the cache is away: the states wait, try again next round
                log.exception("offline_check_failed")
            await asyncio.sleep(self.check_interval)

    async def check_offline(self, now: float) -> int:
        """Every device's silence checked against the clock; how many conditions changed."""
        changed = 0
        for tenant in await self._store.tenants():
            after: int | None = None
            while devices := await self._store.devices(tenant.id, after_id=after, limit=500):
                after = devices[-1].id
                for device in devices:
                    states = load_states(await self._cache.get(state_key(device.id)))
                    state = states.get(self.offline.name)
                    if state is None:
                        continue
                    offline_after = (await self._overrides(device.id, now)).offline_after
                    new_state, found = self.offline.check(state, now=now, offline_after=offline_after)
                    if new_state != state:
                        # A frame handled meanwhile may have written newer states: at worst
                        # that frame's update is lost and the next one redoes it.
                        await self._store_states(device.id, {**states, self.offline.name: new_state})
                    for detection in found:
                        await self._apply(detection)
                        changed += 1
        return changed
