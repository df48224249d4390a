"""The distributed store: MongoDB through PyMongo's own asyncio API.

No write here relies on a multi-document transaction (the emulator the tests
run on has none). Instead every write is idempotent and the writes of one
operation are ordered so that stopping between any two of them loses nothing
a caller was told is stored; repeating the operation completes it. The
ordering argument for ingestion is at `commit_frames` (mongo_ingest.py), the
one for alert changes in mongo_alerts.py; docs/storage.md tells both.

Every write waits for a journaled majority, and reads only see what a majority
holds, so nothing read or acknowledged can be rolled back by a failover.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pymongo
from pymongo import AsyncMongoClient, IndexModel, ReturnDocument
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

from shared.store.accounts import TenantExists
from shared.store.mongo_accounts import MongoAccounts
from shared.store.mongo_alerts import MongoAlerts
from shared.store.mongo_detections import MongoDetections
from shared.store.mongo_device_settings import MongoDeviceSettings
from shared.store.mongo_escalation import MongoEscalation
from shared.store.mongo_geofences import MongoGeofences
from shared.store.mongo_ingest import DUPLICATE_KEY, TELEMETRY_KEY, MongoIngest, OutboxWrite
from shared.store.mongo_push import MongoPush
from shared.store.mongo_sms_replies import MongoSmsReplies
from shared.store.port import CommandRecord, Device, DeviceExists, OutboxEntry, StoreUnavailable

Document = dict[str, Any]

# A majority of the replica set has the write in its journal: a failover cannot
# undo a frame the listener acknowledged.
DURABLE = WriteConcern(w="majority", j=True)
# How long a store call may take, waiting for that majority included, before it
# counts as failed (StoreUnavailable) and its caller tries again. PyMongo keeps
# retrying within it, so it also stands for serverSelectionTimeoutMS.
CALL_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 2.0
NAMESPACE_EXISTS = 48


INDEXES: dict[str, list[IndexModel]] = {
    "tenants": [IndexModel("name", name="tenants_by_name", unique=True)],
    "devices": [
        IndexModel("imei", name="devices_by_imei", unique=True),
        IndexModel([("tenant_id", 1), ("_id", 1)], name="devices_by_tenant"),
    ],
    # Serves positions(): a device's range in (time, seq) order. Not unique: a
    # time-series collection can't have a unique index (position_keys can).
    "positions": [IndexModel([("device_id", 1), ("time", 1), ("seq", 1)], name="positions_by_device")],
    "position_keys": [IndexModel(list(TELEMETRY_KEY), name="position_keys_unique", unique=True)],
    "heartbeats": [IndexModel(list(TELEMETRY_KEY), name="heartbeats_unique", unique=True)],
    "activities": [IndexModel(list(TELEMETRY_KEY), name="activities_unique", unique=True)],
    "alarms": [IndexModel([("device_id", 1), ("device_ts", 1), ("seq", 1)], name="alarms_unique", unique=True)],
    "commands": [
        IndexModel([("status", 1), ("device_id", 1)], name="commands_open"),
        IndexModel([("device_id", 1), ("seq", 1)], name="commands_by_seq"),
    ],
    # Keyed entries (an alarm's, an alert change's) are written at most once while queued.
    "outbox": [
        IndexModel("key", name="outbox_by_key", unique=True, partialFilterExpression={"key": {"$exists": True}})
    ],
}


def _is_unavailable(exc: PyMongoError) -> bool:
    """The server could not be reached, or could not make the write durable in time."""
    if isinstance(exc, ConnectionFailure | WriteConcernError) or exc.timeout:
        return True
    return isinstance(exc, BulkWriteError) and bool(exc.details.get("writeConcernErrors"))


def _device(doc: Document) -> Device:
    return Device(
        doc["_id"],
        doc["tenant_id"],
        doc["imei"],
        doc["name"],
        doc["token_hash"],
        doc["enabled"],
        doc["created_at"],
        doc.get("last_seen"),
        doc.get("battery"),
        doc.get("last_fix_ts"),
        doc.get("last_lat_e7"),
        doc.get("last_lon_e7"),
    )


def _command(doc: Document, imei: str) -> CommandRecord:
    return CommandRecord(doc["_id"], doc["device_id"], imei, doc["cmd"], doc["args"], doc["status"], doc.get("seq"))


class MongoStore(
    MongoIngest,
    MongoAccounts,
    MongoAlerts,
    MongoEscalation,
    MongoDetections,
    MongoGeofences,
    MongoDeviceSettings,
    MongoPush,
    MongoSmsReplies,
):
    """Storage port on MongoDB (6.0 or later). Account and alert methods live in
    mongo_accounts.py and mongo_alerts.py, as mixins over the same database."""

    def __init__(
        self,
        url_or_client: str | AsyncMongoClient[Document],
        database_name: str,
        *,
        timeseries: bool = True,
        call_timeout: float = CALL_TIMEOUT_S,
    ):
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
            database_name,
            write_concern=DURABLE,
            read_concern=ReadConcern("majority"),
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
        for collection, indexes in (
            INDEXES
            | MongoAccounts.INDEXES
            | MongoAlerts.INDEXES
            | MongoEscalation.INDEXES
            | MongoGeofences.INDEXES
            | MongoPush.INDEXES
            | MongoSmsReplies.INDEXES
        ).items():
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
            {"_id": name},
            {"$inc": {"last": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
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
            doc = {
                "_id": await self._new_id("devices"),
                "tenant_id": tenant_id,
                "imei": imei,
                "name": name,
                "token_hash": token_hash,
                "enabled": True,
                "created_at": time.time(),
            }
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
            docs = (
                await db.devices.find({"tenant_id": tenant_id, "_id": {"$gt": after_id or 0}})
                .sort("_id")
                .limit(limit)
                .to_list(None)
            )
        return [_device(doc) for doc in docs]

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
            await db.commands.insert_one(
                {
                    "_id": command_id,
                    "device_id": device_id,
                    "cmd": cmd,
                    "args": args,
                    "status": "pending",
                    "seq": None,
                    "created_at": time.time(),
                }
            )
            return command_id

    async def commands_to_send(
        self,
        device_ids: Sequence[int] | None = None,
        *,
        include_unanswered: bool = False,
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
