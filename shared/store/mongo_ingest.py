"""MongoDB adapter, the telemetry port (a mixin of MongoStore): frames in, positions out.

The ordering argument that replaces a transaction is at `commit_telemetry`:
frames are stored (idempotently) before the messages announcing them are
queued, so a call cut short is completed by the caller's retry.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pymongo import UpdateMany, UpdateOne

from shared.protocols.xsole import FrameType
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID
from shared.protocols.xsole.validation import alarm_time
from shared.store.batch import DeviceAlarm, IngestBatch
from shared.store.messages import (
    COLUMNS,
    TOPIC_ALARM,
    TOPIC_TELEMETRY,
    alarm_message,
    telemetry_message,
)
from shared.store.mongo_devices import command_from_doc
from shared.store.mongo_reports import mark_report_hours
from shared.store.telemetry import StoredActivity, StoredHeartbeat, StoredPosition
from shared.store.webhooks import WebhookEvent
from shared.webhook_events import command_completed_event

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]
OutboxWrite = tuple[str, bytes, str | None]  # topic, payload, and the key that makes writing it idempotent

DUPLICATE_KEY = 11000
_COMMAND_STATUS = {0: "done", 1: "failed", 2: "unsupported"}
TELEMETRY_KEY = ("device_id", "ts", "seq")
# Where a telemetry row (messages.COLUMNS) holds the frame's ts and seq: the same in every table.
_TS_AT, _SEQ_AT = COLUMNS["positions"].index("ts"), COLUMNS["positions"].index("seq")


def _datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _unix(moment: datetime) -> int:
    # utctimetuple() reads an aware date in UTC and takes a naive one as UTC (a
    # client made without tz_aware), so either kind of client gives the same ts.
    return calendar.timegm(moment.utctimetuple())


def _position(doc: Document) -> StoredPosition:
    flags = doc["flags"]
    return StoredPosition(
        _unix(doc["time"]),
        doc["seq"],
        doc["lat_e7"],
        doc["lon_e7"],
        doc["alt_m"],
        doc["speed_cms"],
        doc["course_ddeg"],
        doc["sats"],
        doc["hdop_d"],
        doc["battery"],
        bool(flags & FLAG_FIX_VALID),
        bool(flags & FLAG_BUFFERED),
    )


def _rows(batch: IngestBatch, frame_type: int) -> list[tuple[Any, ...]]:
    """A batch's frames of one type as rows of `COLUMNS`: device id, the frame's
    fields, when it was received."""
    table = batch.tables.get(frame_type)
    if table is None:
        return []
    return [
        (device_id, *fields, received_at)
        for device_id, fields, received_at in zip(table.device_ids, table.fields, table.received_at, strict=True)
    ]


def _alarm_key(alarm: DeviceAlarm) -> Document:
    device, event, _ = alarm
    return {"device_id": device.id, "device_ts": event.ts, "seq": event.seq}


def _alarm_doc(alarm_id: int, alarm: DeviceAlarm) -> Document:
    """An alarm as stored, with the message announcing it (`pending_message`)."""
    _, event, received_at = alarm
    # As in SQLite: a clock far ahead or years behind would misdate the alarm, so
    # the receive time stands in; the device's own ts stays the key.
    ts = alarm_time(event.ts, received_at)
    return {
        "_id": alarm_id,
        **_alarm_key(alarm),
        "ts": ts,
        "kind": event.kind,
        "lat_e7": event.lat_e7,
        "lon_e7": event.lon_e7,
        "battery": event.battery,
        "flags": event.flags,
        "received_at": received_at,
        "pending_message": alarm_message(alarm, alarm_id, ts),
    }


class MongoIngest:
    """Frames in, positions out; and the outbox messages they produce."""

    if TYPE_CHECKING:  # provided by MongoStore
        on_write: Callable[[], None] | None
        _db: AsyncDatabase[Document]

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_ids(self, name: str, count: int = 1) -> range: ...
        async def _insert_new(self, collection: str, docs: list[Document]) -> None: ...
        async def _append_outbox(self, entries: Sequence[OutboxWrite]) -> None: ...
        async def owe_webhook_event(self, event: WebhookEvent, *, at: float) -> int: ...

    async def commit_telemetry(self, batch: IngestBatch) -> None:
        """Store the frames, then queue their messages.

        Without a transaction, the order is the guarantee. The caller acknowledges
        frames only once this returns and sends them all again after a failure, so
        a stop between any two writes must leave what the next attempt completes:

        1. Reads and ids only: which alarms are new; their ids and messages. A
           frame the message can't describe (an unknown alarm kind) fails here,
           before anything is stored.
        2. The frames, each kind on its own (concurrently). Every insert skips
           what its unique key already holds; a position is inserted before its
           key in position_keys, so a stop between the two leaves a position the
           next attempt may store again, never a key without its position.
           Each new alarm is stored with its message in `pending_message`, in one
           single-document (so atomic) insert.
        3. The outbox: every alarm of the commit still pending (new, or left by
           an attempt that stopped after 2), keyed by alarm, then the telemetry
           message (every attempt queues one, as SQLite does for retransmissions).
        4. The alarms' `pending_message` is cleared. A stop before this queues the
           alarm's message again on the next attempt only if the relay has
           already taken the first copy away; consumers key alarms on alarm_id.
        """
        telemetry_payload = telemetry_message(batch)
        async with self._write():
            new_alarms = await self._prepare_alarms(batch.alarms)
            await _all(
                self._store_positions(_rows(batch, FrameType.POSITION)),
                self._store_rows("heartbeats", _rows(batch, FrameType.HEARTBEAT)),
                self._store_rows("activities", _rows(batch, FrameType.ACTIVITY)),
                self._insert_new("alarms", new_alarms),
                self._apply_command_results(_rows(batch, FrameType.COMMAND_RESULT)),
                self._update_device_state(batch),
                self._mark_report_hours(batch),
            )
            pending: list[Document] = []
            if batch.alarms:
                pending = (
                    await self._db.alarms.find(
                        {
                            "$or": [_alarm_key(alarm) for alarm in batch.alarms],
                            "pending_message": {"$exists": True},
                        }
                    )
                    .sort("_id")
                    .to_list(None)
                )
            telemetry_entry: list[OutboxWrite] = (
                [(TOPIC_TELEMETRY, telemetry_payload, None)] if telemetry_payload else []
            )
            await self._announce_alarms(pending, followed_by=telemetry_entry)

    async def _mark_report_hours(self, batch: IngestBatch) -> None:
        # With the frames, so a stop before the telemetry message leaves the marks the retry repeats.
        frames = [
            (row[0], row[_TS_AT])
            for kind in (FrameType.POSITION, FrameType.HEARTBEAT, FrameType.ACTIVITY)
            for row in _rows(batch, kind)
        ]
        if frames:
            await self._db.report_marks.bulk_write(mark_report_hours(frames), ordered=False)

    async def _prepare_alarms(self, alarms: tuple[DeviceAlarm, ...]) -> list[Document]:
        """The documents of the alarms not stored yet, each with its id and message."""
        first_copies: dict[tuple[int, ...], DeviceAlarm] = {}
        for alarm in alarms:  # a retransmission may share a commit with its first copy
            first_copies.setdefault(tuple(_alarm_key(alarm).values()), alarm)
        if not first_copies:
            return []
        stored = await self._db.alarms.find(
            {"$or": [_alarm_key(alarm) for alarm in first_copies.values()]},
            {"device_id": 1, "device_ts": 1, "seq": 1},
        ).to_list(None)
        for doc in stored:
            first_copies.pop((doc["device_id"], doc["device_ts"], doc["seq"]), None)
        if not first_copies:
            return []
        ids = await self._new_ids("alarms", len(first_copies))
        return [_alarm_doc(alarm_id, alarm) for alarm_id, alarm in zip(ids, first_copies.values(), strict=True)]

    async def _announce_alarms(self, alarms: list[Document], *, followed_by: Sequence[OutboxWrite] = ()) -> None:
        """Queue the pending messages of these alarms (then `followed_by`), and clear them."""
        await self._append_outbox(
            [
                *((TOPIC_ALARM, doc["pending_message"], f"alarm:{doc['_id']}") for doc in alarms),
                *followed_by,
            ]
        )
        if alarms:
            await self._db.alarms.update_many(
                {"_id": {"$in": [doc["_id"] for doc in alarms]}},
                {"$unset": {"pending_message": ""}},
            )

    async def _store_rows(self, kind: str, rows: list[tuple[Any, ...]]) -> None:
        columns = COLUMNS[kind]
        await self._insert_new(kind, [dict(zip(columns, row, strict=True)) for row in rows])

    async def _store_positions(self, rows: list[tuple[Any, ...]]) -> None:
        # A time-series collection has no unique index: position_keys holds the
        # keys of the stored positions and is checked first.
        if not rows:
            return
        first_copies: dict[tuple[int, int, int], tuple[Any, ...]] = {}
        for row in rows:
            first_copies.setdefault((row[0], row[_TS_AT], row[_SEQ_AT]), row)
        by_device: dict[int, list[int]] = {}
        for device_id, ts, _ in first_copies:
            by_device.setdefault(device_id, []).append(ts)
        stored = await self._db.position_keys.find(
            {"$or": [{"device_id": device_id, "ts": {"$in": ts}} for device_id, ts in by_device.items()]},
            {"_id": 0, "device_id": 1, "ts": 1, "seq": 1},
        ).to_list(None)
        for key in stored:
            first_copies.pop((key["device_id"], key["ts"], key["seq"]), None)
        if not first_copies:
            return
        positions = []
        for row in first_copies.values():
            doc = dict(zip(COLUMNS["positions"], row, strict=True))
            doc["time"] = _datetime(doc.pop("ts"))
            positions.append(doc)
        await self._db.positions.insert_many(positions, ordered=False)
        await self._insert_new("position_keys", [dict(zip(TELEMETRY_KEY, key, strict=True)) for key in first_copies])

    async def _apply_command_results(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        now = time.time()
        # The answer and the promise of its webhook event in one document write; the event is owed
        # next, and a stop in between leaves the promise for open() to keep.
        await self._db.commands.bulk_write(
            [
                UpdateMany(
                    {"device_id": device_id, "seq": cmd_seq, "status": "sent"},
                    {"$set": {"status": _COMMAND_STATUS.get(status, "failed"), "result_at": now, "owes_event": True}},
                )
                for device_id, _, cmd_seq, status, _ in rows
            ],
            ordered=False,
        )
        await self._owe_command_events({"device_id": {"$in": list({row[0] for row in rows})}})

    async def _owe_command_events(self, where: Document) -> None:
        """Owe the `command.completed` events of answered commands that still promise one."""
        docs = await self._db.commands.find({**where, "owes_event": True}).to_list(None)
        if not docs:
            return
        devices = {
            doc["_id"]: doc
            for doc in await self._db.devices.find(
                {"_id": {"$in": list({doc["device_id"] for doc in docs})}}, {"imei": 1, "tenant_id": 1}
            ).to_list(None)
        }
        for doc in docs:
            device = devices.get(doc["device_id"])
            if device is not None:  # retired since: nobody to tell
                event = command_completed_event(device["tenant_id"], command_from_doc(doc, device["imei"]), time.time())
                await self.owe_webhook_event(event, at=time.time())
            await self._db.commands.update_one({"_id": doc["_id"]}, {"$unset": {"owes_event": ""}})

    async def _update_device_state(self, batch: IngestBatch) -> None:
        # Buffered frames arrive late: only a newer reading replaces the device's
        # battery or last fix. Each update compares with what is stored, so
        # commits racing on one device end with the newest reading.
        updates: list[UpdateOne] = []
        for device_id, (seen, battery, fix) in batch.readings.items():
            updates.append(UpdateOne({"_id": device_id}, {"$max": {"last_seen": seen}}))
            if battery is not None:
                battery_ts, level = battery
                updates.append(
                    UpdateOne(
                        {"_id": device_id, "$or": [{"battery_ts": None}, {"battery_ts": {"$lte": battery_ts}}]},
                        {"$set": {"battery": level, "battery_ts": battery_ts}},
                    )
                )
            if fix is not None:
                fix_ts, lat_e7, lon_e7 = fix
                updates.append(
                    UpdateOne(
                        {"_id": device_id, "$or": [{"last_fix_ts": None}, {"last_fix_ts": {"$lt": fix_ts}}]},
                        {"$set": {"last_fix_ts": fix_ts, "last_lat_e7": lat_e7, "last_lon_e7": lon_e7}},
                    )
                )
        if updates:
            await self._db.devices.bulk_write(updates, ordered=False)

    async def positions(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[StoredPosition]:
        # A stop between storing a position and its key, or two commits racing on
        # one position, can store it twice: copies are adjacent in (time, seq)
        # order and all but the first are dropped, fetching more to fill the page.
        found: list[StoredPosition] = []
        cursor = after
        async with self._read() as db:
            while len(found) < limit:
                wanted = limit - len(found)
                docs = (
                    await db.positions.find(_positions_query(device_id, since, until, cursor))
                    .sort([("time", 1), ("seq", 1)])
                    .limit(wanted)
                    .to_list(None)
                )
                for doc in docs:
                    position = _position(doc)
                    if not found or (found[-1].ts, found[-1].seq) != (position.ts, position.seq):
                        found.append(position)
                if len(docs) < wanted:
                    break
                cursor = (found[-1].ts, found[-1].seq)  # strictly after: the next page holds no copy of it
        return found

    async def activities(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[StoredActivity]:
        docs = await self._frames("activities", device_id, since, until, after, limit)
        return [
            StoredActivity(
                doc["ts"],
                doc["seq"],
                doc["steps"],
                doc["state"],
                doc["cadence"],
                doc["battery"],
                bool(doc["flags"] & FLAG_BUFFERED),
            )
            for doc in docs
        ]

    async def heartbeats(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[StoredHeartbeat]:
        docs = await self._frames("heartbeats", device_id, since, until, after, limit)
        return [StoredHeartbeat(doc["ts"], doc["seq"], doc["battery"], doc["rssi"]) for doc in docs]

    async def _frames(
        self,
        kind: str,
        device_id: int,
        since: int | None,
        until: int | None,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[Document]:
        """Heartbeats or activities, oldest first. Unlike positions they are plain collections
        whose unique index (device, ts, seq) keeps each frame once, so a page is one query."""
        time_range: Document = {}
        if since is not None:
            time_range["$gte"] = since
        if until is not None:
            time_range["$lte"] = until
        query: Document = {"device_id": device_id}
        if after is not None:
            if since is None or after[0] >= since:
                time_range["$gte"] = after[0]
            query["$or"] = [{"ts": {"$gt": after[0]}}, {"ts": after[0], "seq": {"$gt": after[1]}}]
        if time_range:
            query["ts"] = time_range
        async with self._read() as db:
            return await db[kind].find(query).sort([("ts", 1), ("seq", 1)]).limit(limit).to_list(None)


# The instants a BSON date can stand for in Python: a bound beyond them means "from/to the end of time".
_FIRST_TS, _LAST_TS = -62135596800, 253402300799  # 0001-01-01T00:00:00Z, 9999-12-31T23:59:59Z


def _bound(ts: int) -> datetime:
    return _datetime(min(max(ts, _FIRST_TS), _LAST_TS))


def _positions_query(device_id: int, since: int | None, until: int | None, after: tuple[int, int] | None) -> Document:
    time_range: Document = {}
    if since is not None:
        time_range["$gte"] = _bound(since)
    if until is not None:
        time_range["$lte"] = _bound(until)
    query: Document = {"device_id": device_id}
    if after is not None:
        after_time, after_seq = _bound(after[0]), after[1]
        # The cursor also bounds the range from below, so the index is entered at it.
        if since is None or after[0] >= since:
            time_range["$gte"] = after_time
        query["$or"] = [{"time": {"$gt": after_time}}, {"time": after_time, "seq": {"$gt": after_seq}}]
    if time_range:
        query["time"] = time_range
    return query


async def _all(*writes: Coroutine[Any, Any, object]) -> None:
    """Run independent writes at once. The first failure is raised as itself (so
    StoreUnavailable translation sees it), the others are cancelled."""
    try:
        async with asyncio.TaskGroup() as group:
            for write in writes:
                group.create_task(write)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
