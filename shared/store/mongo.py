"""The distributed store: MongoDB through PyMongo's own asyncio API.

No write here relies on a multi-document transaction (the emulator the tests
run on has none). Instead every write is idempotent and the writes of one
operation are ordered so that stopping between any two of them loses nothing
a caller was told is stored; repeating the operation completes it. The
ordering argument for ingestion is at `commit_frames`, the one for alert
changes in mongo_alerts.py; docs/storage.md tells both.

Every write waits for a journaled majority, and reads only see what a majority
holds, so nothing read or acknowledged can be rolled back by a failover.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pymongo
from pymongo import AsyncMongoClient, IndexModel, ReturnDocument, UpdateMany, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from shared.protocols.xsole import Alarm, Position
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.protocols.xsole.validation import MAX_FUTURE_SKEW_S
from shared.store.accounts import TenantExists
from shared.store.messages import (
    COLUMNS,
    TOPIC_ALARM,
    TOPIC_TELEMETRY,
    Telemetry,
    alarm_message,
    split_telemetry,
    telemetry_message,
)
from shared.store.mongo_accounts import MongoAccounts
from shared.store.mongo_alerts import MongoAlerts
from shared.store.mongo_detections import MongoDetections
from shared.store.mongo_device_settings import MongoDeviceSettings
from shared.store.mongo_escalation import MongoEscalation
from shared.store.mongo_geofences import MongoGeofences
from shared.store.port import CommandRecord, Device, DeviceExists, FrameRecord, OutboxEntry, StoreUnavailable

Document = dict[str, Any]
OutboxWrite = tuple[str, bytes, str | None]  # topic, payload, and the key that makes writing it idempotent

# A majority of the replica set has the write in its journal: a failover cannot
# undo a frame the listener acknowledged.
DURABLE = WriteConcern(w="majority", j=True)
# How long a store call may take, waiting for that majority included, before it
# counts as failed (StoreUnavailable) and its caller tries again. PyMongo keeps
# retrying within it, so it also stands for serverSelectionTimeoutMS.
CALL_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 2.0
DUPLICATE_KEY = 11000
NAMESPACE_EXISTS = 48

_COMMAND_STATUS = {0: "done", 1: "failed", 2: "unsupported"}
_TELEMETRY_KEY = ("device_id", "ts", "seq")
_MEASUREMENTS = Position._fields[2:]  # what follows seq and ts
# Where a telemetry row (messages.COLUMNS) holds the frame's ts and seq: the same in every table.
_TS_AT, _SEQ_AT = COLUMNS["positions"].index("ts"), COLUMNS["positions"].index("seq")

INDEXES: dict[str, list[IndexModel]] = {
    "tenants": [IndexModel("name", name="tenants_by_name", unique=True)],
    "devices": [
        IndexModel("imei", name="devices_by_imei", unique=True),
        IndexModel([("tenant_id", 1), ("_id", 1)], name="devices_by_tenant"),
    ],
    # Serves positions(): a device's range in (time, seq) order. Not unique: a
    # time-series collection can't have a unique index (position_keys can).
    "positions": [IndexModel([("device_id", 1), ("time", 1), ("seq", 1)], name="positions_by_device")],
    "position_keys": [IndexModel(list(_TELEMETRY_KEY), name="position_keys_unique", unique=True)],
    "heartbeats": [IndexModel(list(_TELEMETRY_KEY), name="heartbeats_unique", unique=True)],
    "activities": [IndexModel(list(_TELEMETRY_KEY), name="activities_unique", unique=True)],
    "alarms": [IndexModel([("device_id", 1), ("device_ts", 1), ("seq", 1)], name="alarms_unique", unique=True)],
    "commands": [
        IndexModel([("status", 1), ("device_id", 1)], name="commands_open"),
        IndexModel([("device_id", 1), ("seq", 1)], name="commands_by_seq"),
    ],
    # Keyed entries (an alarm's, an alert change's) are written at most once while queued.
    "outbox": [IndexModel("key", name="outbox_by_key", unique=True, partialFilterExpression={"key": {"$exists": True}})],
}


def _is_unavailable(exc: PyMongoError) -> bool:
    """The server could not be reached, or could not make the write durable in time."""
    if isinstance(exc, ConnectionFailure | WriteConcernError) or exc.timeout:
        return True
    return isinstance(exc, BulkWriteError) and bool(exc.details.get("writeConcernErrors"))


def _datetime(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _unix(moment: datetime) -> int:
    # utctimetuple() reads an aware date in UTC and takes a naive one as UTC (a
    # client made without tz_aware), so either kind of client gives the same ts.
    return calendar.timegm(moment.utctimetuple())


def _device(doc: Document) -> Device:
    return Device(
        doc["_id"], doc["tenant_id"], doc["imei"], doc["name"], doc["token_hash"], doc["enabled"], doc["created_at"],
        doc.get("last_seen"), doc.get("battery"), doc.get("last_fix_ts"), doc.get("last_lat_e7"), doc.get("last_lon_e7"),
    )


def _position(doc: Document) -> Position:
    return Position(doc["seq"], _unix(doc["time"]), *(doc[field] for field in _MEASUREMENTS))


def _command(doc: Document, imei: str) -> CommandRecord:
    return CommandRecord(doc["_id"], doc["device_id"], imei, doc["cmd"], doc["args"], doc["status"], doc.get("seq"))


def _alarm(record: FrameRecord) -> Alarm:
    event = record.event
    assert isinstance(event, Alarm)
    return event


def _alarm_key(record: FrameRecord) -> Document:
    event = _alarm(record)
    return {"device_id": record.device_id, "device_ts": event.ts, "seq": event.seq}


def _alarm_doc(alarm_id: int, record: FrameRecord) -> Document:
    """An alarm as stored, with the message announcing it (`pending_message`)."""
    event = _alarm(record)
    # As in SQLite: a clock too far ahead would date the alarm in the future, so
    # the receive time stands in; the device's own ts stays the key.
    ts = event.ts if event.ts <= record.received_at + MAX_FUTURE_SKEW_S else int(record.received_at)
    return {
        "_id": alarm_id, **_alarm_key(record), "ts": ts, "kind": event.kind, "lat_e7": event.lat_e7,
        "lon_e7": event.lon_e7, "battery": event.battery, "flags": event.flags, "received_at": record.received_at,
        "pending_message": alarm_message(record, alarm_id, ts),
    }


class MongoStore(MongoAccounts, MongoAlerts, MongoEscalation, MongoDetections, MongoGeofences,
                 MongoDeviceSettings):
    """Storage port on MongoDB (6.0 or later). Account and alert methods live in
    mongo_accounts.py and mongo_alerts.py, as mixins over the same database."""

    def __init__(self, url_or_client: str | AsyncMongoClient[Document], database_name: str, *,
                 timeseries: bool = True, call_timeout: float = CALL_TIMEOUT_S):
        """`url_or_client`: a MongoDB URL, or a client made elsewhere (the tests'
        emulator), which the caller then also closes. `timeseries`: positions in a
        time-series collection (the emulator has none). `call_timeout`: seconds a
        call may take, retries included, before it raises StoreUnavailable."""
        self._owns_client = isinstance(url_or_client, str)
        self._client: AsyncMongoClient[Document] = (
            AsyncMongoClient(url_or_client, tz_aware=True) if isinstance(url_or_client, str) else url_or_client
        )
        # On the database, not the client: a client passed in gets the same guarantees.
        self._db: AsyncDatabase[Document] = self._client.get_database(
            database_name, write_concern=DURABLE, read_concern=ReadConcern("majority"),
        )
        self._timeseries = timeseries
        self._call_timeout = call_timeout
        # Outbox ids are taken and inserted under this lock, so this process
        # inserts them in id order and a relay's cursor (outbox_pending's
        # after_id) never passes an id still being written (docs/storage.md).
        self._outbox_lock = asyncio.Lock()
        # Called on the event loop after every completed write, so the outbox
        # relay can move what it wrote without waiting for its next poll.
        self.on_write: Callable[[], None] | None = None

    # -- plumbing ---------------------------------------------------------------

    @asynccontextmanager
    async def _write(self, *, deadline: bool = True) -> AsyncIterator[AsyncDatabase[Document]]:
        """The database for one store call that writes: as `_read`, then on_write once it completed."""
        async with self._read(deadline=deadline) as db:
            yield db
        if self.on_write is not None:
            self.on_write()

    @asynccontextmanager
    async def _read(self, *, deadline: bool = True) -> AsyncIterator[AsyncDatabase[Document]]:
        """The database for one store call, under its deadline; an unreachable server is StoreUnavailable."""
        try:
            # One deadline for every operation of the call, retries included (tasks
            # it starts inherit it); it also bounds the wait for a write's majority.
            with pymongo.timeout(self._call_timeout if deadline else None):
                yield self._db
        except PyMongoError as exc:
            if _is_unavailable(exc):
                raise StoreUnavailable(str(exc)) from exc
            raise

    async def open(self) -> None:
        await self.ping()  # an unreachable server fails fast, not after server selection's 30 s
        # No deadline: building a new index on a large collection takes its time.
        async with self._write(deadline=False):
            await self.migrate()
            await self._finish_announcements()

    async def migrate(self) -> None:
        """Create the collections and indexes the queries need; running it again changes nothing."""
        if "positions" not in await self._db.list_collection_names():
            options: Document = {}
            if self._timeseries:
                options["timeseries"] = {"timeField": "time", "metaField": "device_id", "granularity": "seconds"}
            try:
                await self._db.create_collection("positions", **options)
            except CollectionInvalid:
                pass  # another process created it meanwhile
            except OperationFailure as exc:
                if exc.code != NAMESPACE_EXISTS:
                    raise
        for collection, indexes in (INDEXES | MongoAccounts.INDEXES | MongoAlerts.INDEXES | MongoEscalation.INDEXES | MongoGeofences.INDEXES).items():
            # One create_index per index rather than create_indexes: the emulator's
            # create_indexes drops partialFilterExpression, making partial unique
            # indexes refuse documents they should let through.
            for index in indexes:
                spec = dict(index.document)
                keys = spec.pop("key")
                await self._db[collection].create_index(list(keys.items()), **spec)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.close()

    async def ping(self) -> None:
        try:
            with pymongo.timeout(min(PING_TIMEOUT_S, self._call_timeout)):
                await self._db.command("ping")
        except PyMongoError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _new_ids(self, name: str, count: int = 1) -> range:
        """`count` new ids of a kind (tenants, alarms, outbox...), never given before."""
        counter = await self._db.counters.find_one_and_update(
            {"_id": name}, {"$inc": {"last": count}}, upsert=True, return_document=ReturnDocument.AFTER,
        )
        last: int = counter["last"]  # type: ignore[index]  # upsert: always a document
        return range(last - count + 1, last + 1)

    async def _new_id(self, name: str) -> int:
        return (await self._new_ids(name))[0]

    async def _insert_new(self, collection: str, docs: list[Document]) -> None:
        """Insert the documents, skipping those a unique index already holds."""
        if not docs:
            return
        try:
            await self._db[collection].insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(error["code"] != DUPLICATE_KEY for error in errors):
                raise

    async def _append_outbox(self, entries: Sequence[OutboxWrite]) -> None:
        """Queue messages for the relay. A keyed entry already queued is not queued twice."""
        if not entries:
            return
        now = time.time()
        async with self._outbox_lock:
            ids = await self._new_ids("outbox", len(entries))
            docs: list[Document] = []
            for outbox_id, (topic, payload, key) in zip(ids, entries, strict=True):
                doc = {"_id": outbox_id, "topic": topic, "payload": payload, "created_at": now}
                if key is not None:
                    doc["key"] = key
                docs.append(doc)
            await self._insert_new("outbox", docs)

    async def _finish_announcements(self) -> None:
        """Queue the messages of writes that stopped before queuing them (at open)."""
        await self._announce_alarms(await self._db.alarms.find({"pending_message": {"$exists": True}}).to_list(None))
        await self._finish_alert_changes()

    # -- tenants and devices -------------------------------------------------------

    async def ensure_tenant(self, name: str) -> int:
        tenant = await self.tenant_by_name(name)
        if tenant is None:
            try:
                tenant = await self.create_tenant(name)
            except TenantExists:  # created meanwhile by another caller
                tenant = await self.tenant_by_name(name)
        assert tenant is not None, "tenants are never deleted"
        return tenant.id

    async def add_device(self, *, tenant_id: int, imei: str, name: str, token_hash: bytes) -> Device:
        async with self._write() as db:
            # No null state fields: $max treats a stored null as smaller than any
            # time, but the emulator cannot compare them; absent reads as None.
            doc = {"_id": await self._new_id("devices"), "tenant_id": tenant_id, "imei": imei, "name": name,
                   "token_hash": token_hash, "enabled": True, "created_at": time.time()}
            try:
                await db.devices.insert_one(doc)
            except DuplicateKeyError as exc:
                raise DeviceExists(imei) from exc
            return _device(doc)

    async def set_device_token(self, *, imei: str, token_hash: bytes) -> None:
        async with self._write() as db:
            await db.devices.update_one({"imei": imei}, {"$set": {"token_hash": token_hash}})

    async def device_by_imei(self, imei: str) -> Device | None:
        async with self._read() as db:
            doc = await db.devices.find_one({"imei": imei})
        return _device(doc) if doc else None

    async def device(self, device_id: int) -> Device | None:
        async with self._read() as db:
            doc = await db.devices.find_one({"_id": device_id})
        return _device(doc) if doc else None

    async def devices(self, tenant_id: int, *, after_id: int | None = None, limit: int = 100) -> list[Device]:
        async with self._read() as db:
            docs = await db.devices.find({"tenant_id": tenant_id, "_id": {"$gt": after_id or 0}}).sort("_id").limit(
                limit).to_list(None)
        return [_device(doc) for doc in docs]

    # -- ingestion -------------------------------------------------------------------

    async def commit_frames(self, records: Sequence[FrameRecord]) -> None:
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
        telemetry = split_telemetry(records)
        telemetry_payload = telemetry_message(telemetry)
        async with self._write():
            new_alarms = await self._prepare_alarms(telemetry.alarms)
            await _all(
                self._store_positions(telemetry.rows("positions")),
                self._store_rows("heartbeats", telemetry.rows("heartbeats")),
                self._store_rows("activities", telemetry.rows("activities")),
                self._insert_new("alarms", new_alarms),
                self._apply_command_results(telemetry.rows("command_results")),
                self._update_device_state(telemetry),
            )
            pending: list[Document] = []
            if telemetry.alarms:
                pending = await self._db.alarms.find({
                    "$or": [_alarm_key(record) for record in telemetry.alarms], "pending_message": {"$exists": True},
                }).sort("_id").to_list(None)
            telemetry_entry: list[OutboxWrite] = [(TOPIC_TELEMETRY, telemetry_payload, None)] if telemetry_payload else []
            await self._announce_alarms(pending, followed_by=telemetry_entry)

    async def _prepare_alarms(self, records: list[FrameRecord]) -> list[Document]:
        """The documents of the alarms not stored yet, each with its id and message."""
        first_copies: dict[tuple[int, ...], FrameRecord] = {}
        for record in records:  # a retransmission may share a commit with its first copy
            first_copies.setdefault(tuple(_alarm_key(record).values()), record)
        if not first_copies:
            return []
        stored = await self._db.alarms.find(
            {"$or": [_alarm_key(record) for record in first_copies.values()]}, {"device_id": 1, "device_ts": 1, "seq": 1},
        ).to_list(None)
        for doc in stored:
            first_copies.pop((doc["device_id"], doc["device_ts"], doc["seq"]), None)
        if not first_copies:
            return []
        ids = await self._new_ids("alarms", len(first_copies))
        return [_alarm_doc(alarm_id, record) for alarm_id, record in zip(ids, first_copies.values(), strict=True)]

    async def _announce_alarms(self, alarms: list[Document], *, followed_by: Sequence[OutboxWrite] = ()) -> None:
        """Queue the pending messages of these alarms (then `followed_by`), and clear them."""
        await self._append_outbox([
            *((TOPIC_ALARM, doc["pending_message"], f"alarm:{doc['_id']}") for doc in alarms), *followed_by,
        ])
        if alarms:
            await self._db.alarms.update_many(
                {"_id": {"$in": [doc["_id"] for doc in alarms]}}, {"$unset": {"pending_message": ""}},
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
        await self._insert_new("position_keys", [dict(zip(_TELEMETRY_KEY, key, strict=True)) for key in first_copies])

    async def _apply_command_results(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        now = time.time()
        await self._db.commands.bulk_write([
            UpdateMany({"device_id": device_id, "seq": cmd_seq, "status": "sent"},
                       {"$set": {"status": _COMMAND_STATUS.get(status, "failed"), "result_at": now}})
            for device_id, _, cmd_seq, status, _ in rows
        ], ordered=False)

    async def _update_device_state(self, telemetry: Telemetry) -> None:
        # Buffered frames arrive late: only a newer reading replaces the device's
        # battery or last fix. Each update compares with what is stored, so
        # commits racing on one device end with the newest reading.
        updates: list[UpdateOne] = []
        for device_id, (seen, battery, fix) in _device_readings(telemetry).items():
            updates.append(UpdateOne({"_id": device_id}, {"$max": {"last_seen": seen}}))
            if battery is not None:
                battery_ts, level = battery
                updates.append(UpdateOne(
                    {"_id": device_id, "$or": [{"battery_ts": None}, {"battery_ts": {"$lte": battery_ts}}]},
                    {"$set": {"battery": level, "battery_ts": battery_ts}},
                ))
            if fix is not None:
                fix_ts, lat_e7, lon_e7 = fix
                updates.append(UpdateOne(
                    {"_id": device_id, "$or": [{"last_fix_ts": None}, {"last_fix_ts": {"$lt": fix_ts}}]},
                    {"$set": {"last_fix_ts": fix_ts, "last_lat_e7": lat_e7, "last_lon_e7": lon_e7}},
                ))
        if updates:
            await self._db.devices.bulk_write(updates, ordered=False)

    async def positions(
        self, device_id: int, *, since: int | None = None, until: int | None = None,
        after: tuple[int, int] | None = None, limit: int = 100,
    ) -> list[Position]:
        # A stop between storing a position and its key, or two commits racing on
        # one position, can store it twice: copies are adjacent in (time, seq)
        # order and all but the first are dropped, fetching more to fill the page.
        found: list[Position] = []
        cursor = after
        async with self._read() as db:
            while len(found) < limit:
                wanted = limit - len(found)
                docs = await db.positions.find(_positions_query(device_id, since, until, cursor)).sort(
                    [("time", 1), ("seq", 1)]).limit(wanted).to_list(None)
                for doc in docs:
                    position = _position(doc)
                    if not found or (found[-1].ts, found[-1].seq) != (position.ts, position.seq):
                        found.append(position)
                if len(docs) < wanted:
                    break
                cursor = (found[-1].ts, found[-1].seq)  # strictly after: the next page holds no copy of it
        return found

    async def count_stored(self, device_id: int) -> dict[str, int]:
        async with self._read() as db:
            return {
                # A position counts once its key is stored: copies stored twice count once.
                "positions": await db.position_keys.count_documents({"device_id": device_id}),
                **{kind: await db[kind].count_documents({"device_id": device_id})
                   for kind in ("heartbeats", "activities", "alarms")},
            }

    async def outbox_pending(self, limit: int, *, after_id: int = 0) -> list[OutboxEntry]:
        async with self._read() as db:
            docs = await db.outbox.find({"_id": {"$gt": after_id}}).sort("_id").limit(limit).to_list(None)
        return [OutboxEntry(doc["_id"], doc["topic"], doc["payload"]) for doc in docs]

    async def outbox_remove(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self._write() as db:
            await db.outbox.delete_many({"_id": {"$in": list(ids)}})

    # -- downlink commands -----------------------------------------------------------

    async def enqueue_command(self, *, device_id: int, cmd: int, args: bytes = b"") -> int:
        async with self._write() as db:
            command_id = await self._new_id("commands")
            await db.commands.insert_one({"_id": command_id, "device_id": device_id, "cmd": cmd, "args": args,
                                          "status": "pending", "seq": None, "created_at": time.time()})
            return command_id

    async def commands_to_send(
        self, device_ids: Sequence[int] | None = None, *, include_unanswered: bool = False,
    ) -> list[CommandRecord]:
        query: Document = {"status": {"$in": ["pending", "sent"] if include_unanswered else ["pending"]}}
        if device_ids is not None:
            query["device_id"] = {"$in": list(device_ids)}
        async with self._read() as db:
            docs = await db.commands.find(query).sort("_id").to_list(None)
            imeis = await self._imeis(doc["device_id"] for doc in docs)
        # A command of a device that no longer exists has nobody to go to (SQLite's join drops it too).
        return [_command(doc, imeis[doc["device_id"]]) for doc in docs if doc["device_id"] in imeis]

    async def mark_command_sent(self, command_id: int, seq: int) -> None:
        async with self._write() as db:
            await db.commands.update_one(
                {"_id": command_id, "status": {"$in": ["pending", "sent"]}},
                {"$set": {"status": "sent", "seq": seq, "sent_at": time.time()}},
            )

    async def command(self, command_id: int) -> CommandRecord | None:
        async with self._read() as db:
            doc = await db.commands.find_one({"_id": command_id})
            imeis = await self._imeis([doc["device_id"]] if doc else [])
        return _command(doc, imeis[doc["device_id"]]) if doc and doc["device_id"] in imeis else None

    async def _imeis(self, device_ids: Iterable[int]) -> dict[int, str]:
        wanted = list(set(device_ids))
        if not wanted:
            return {}
        docs = await self._db.devices.find({"_id": {"$in": wanted}}, {"imei": 1}).to_list(None)
        return {doc["_id"]: doc["imei"] for doc in docs}


def _positions_query(device_id: int, since: int | None, until: int | None, after: tuple[int, int] | None) -> Document:
    time_range: Document = {}
    if since is not None:
        time_range["$gte"] = _datetime(since)
    if until is not None:
        time_range["$lte"] = _datetime(until)
    query: Document = {"device_id": device_id}
    if after is not None:
        after_time, after_seq = _datetime(after[0]), after[1]
        # The cursor also bounds the range from below, so the index is entered at it.
        if since is None or after[0] >= since:
            time_range["$gte"] = after_time
        query["$or"] = [{"time": {"$gt": after_time}}, {"time": after_time, "seq": {"$gt": after_seq}}]
    if time_range:
        query["time"] = time_range
    return query


_BATTERY_AT = {kind: COLUMNS[kind].index("battery") for kind in ("positions", "heartbeats", "activities")}
_FLAGS_AT = COLUMNS["positions"].index("flags")
_LAT_AT = COLUMNS["positions"].index("lat_e7")
_LON_AT = COLUMNS["positions"].index("lon_e7")


def _device_readings(
    telemetry: Telemetry,
) -> dict[int, tuple[float, tuple[int, int] | None, tuple[int, int, int] | None]]:
    """Per device of a commit: when last heard from, its newest battery level as
    (ts, level), and its newest valid fix as (ts, lat_e7, lon_e7)."""
    last_seen: dict[int, float] = {}
    battery: dict[int, tuple[int, int]] = {}
    newest_fix: dict[int, tuple[int, int, int]] = {}
    for kind, battery_at in _BATTERY_AT.items():
        for row in telemetry.rows(kind):
            device_id, ts = row[0], row[_TS_AT]
            last_seen[device_id] = max(row[-1], last_seen.get(device_id, 0.0))
            level = row[battery_at]
            if level <= 100:  # above 100: level unknown
                known = battery.get(device_id)
                if known is None or ts >= known[0]:
                    battery[device_id] = (ts, level)
            if kind == "positions" and row[_FLAGS_AT] & FLAG_FIX_VALID:
                fix = newest_fix.get(device_id)
                if fix is None or ts > fix[0]:
                    newest_fix[device_id] = (ts, row[_LAT_AT], row[_LON_AT])
    for record in telemetry.alarms:
        last_seen[record.device_id] = max(record.received_at, last_seen.get(record.device_id, 0.0))
    for row in telemetry.rows("command_results"):
        last_seen[row[0]] = max(row[-1], last_seen.get(row[0], 0.0))
    return {device_id: (seen, battery.get(device_id), newest_fix.get(device_id)) for device_id, seen in last_seen.items()}


async def _all(*writes: Coroutine[Any, Any, object]) -> None:
    """Run independent writes at once. The first failure is raised as itself (so
    StoreUnavailable translation sees it), the others are cancelled."""
    try:
        async with asyncio.TaskGroup() as group:
            for write in writes:
                group.create_task(write)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
