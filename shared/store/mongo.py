"""The distributed store: MongoDB through PyMongo's own asyncio API.

No write here relies on a multi-document transaction (the emulator the tests
run on has none). Instead every write is idempotent and the writes of one
operation are ordered so that stopping between any two of them loses nothing
a caller was told is stored; repeating the operation completes it. The
ordering argument for ingestion is at `commit_telemetry` (mongo_ingest.py), the
one for alert changes in mongo_alerts.py; docs/storage.md tells both.

Every write waits for a journaled majority, and reads only see what a majority
holds, so nothing read or acknowledged can be rolled back by a failover.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pymongo
from pymongo import AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    CollectionInvalid,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from shared.store.mongo_accounts import MongoAccounts
from shared.store.mongo_alerting import MongoAlerting
from shared.store.mongo_audit import MongoAudit
from shared.store.mongo_detection_config import MongoDetectionConfig
from shared.store.mongo_devices import MongoDevices
from shared.store.mongo_ingest import DUPLICATE_KEY, TELEMETRY_KEY, MongoIngest
from shared.store.mongo_outbox import MongoOutbox
from shared.store.mongo_reports import MongoReports
from shared.store.mongo_retention import MongoRetention
from shared.store.mongo_tenant_settings import MongoTenantSettings
from shared.store.mongo_webhook_positions import MongoWebhookPositions
from shared.store.mongo_webhooks import MongoWebhooks
from shared.store.port import StoreUnavailable

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


# The telemetry commit's collections (mongo_ingest.py); each port's mixin names its own.
TELEMETRY_INDEXES: dict[str, list[IndexModel]] = {
    # Serves positions(): a device's range in (time, seq) order. Not unique: a
    # time-series collection can't have a unique index (position_keys can).
    "positions": [IndexModel([("device_id", 1), ("time", 1), ("seq", 1)], name="positions_by_device")],
    "position_keys": [IndexModel(list(TELEMETRY_KEY), name="position_keys_unique", unique=True)],
    "heartbeats": [IndexModel(list(TELEMETRY_KEY), name="heartbeats_unique", unique=True)],
    "activities": [IndexModel(list(TELEMETRY_KEY), name="activities_unique", unique=True)],
    "alarms": [IndexModel([("device_id", 1), ("device_ts", 1), ("seq", 1)], name="alarms_unique", unique=True)],
}
INDEXES: dict[str, list[IndexModel]] = (
    MongoAccounts.INDEXES
    | MongoDevices.INDEXES
    | TELEMETRY_INDEXES
    | MongoOutbox.INDEXES
    | MongoAlerting.INDEXES
    | MongoDetectionConfig.INDEXES
    | MongoAudit.INDEXES
    | MongoWebhooks.INDEXES
    | MongoWebhookPositions.INDEXES
    | MongoReports.INDEXES
)


def _is_unavailable(exc: PyMongoError) -> bool:
    """The server could not be reached, or could not make the write durable in time."""
    if isinstance(exc, ConnectionFailure | WriteConcernError) or exc.timeout:
        return True
    return isinstance(exc, BulkWriteError) and bool(exc.details.get("writeConcernErrors"))


class MongoStore(
    MongoAccounts,
    MongoDevices,
    MongoIngest,
    MongoOutbox,
    MongoAlerting,
    MongoDetectionConfig,
    MongoAudit,
    MongoWebhooks,
    MongoWebhookPositions,
    MongoTenantSettings,
    MongoReports,
    MongoRetention,
):
    """Every storage port on MongoDB (6.0 or later), one mixin per port over the same
    database; the telemetry port is MongoIngest."""

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
        for collection, indexes in INDEXES.items():
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

    async def _finish_announcements(self) -> None:
        """Queue the messages of writes that stopped before queuing them (at open)."""
        await self._announce_alarms(await self._db.alarms.find({"pending_message": {"$exists": True}}).to_list(None))
        await self._finish_alert_changes()
        await self._owe_command_events({})
        await self._finish_audit()
