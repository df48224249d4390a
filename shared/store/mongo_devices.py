"""MongoDB adapter, devices and their downlink commands (a mixin of MongoStore).

The telemetry commit (mongo_ingest.py) moves a device's state fields (last
seen, battery, last fix) forward and answers the commands its frames name.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError

from shared.store.devices import CommandRecord, Device, DeviceExists

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _device(doc: Document) -> Device:
    # The state fields are absent until the first frame sets them (see add_device).
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
    return CommandRecord(doc["_id"], doc["device_id"], imei, doc["cmd"], doc["args"], doc["status"], doc["seq"])


class MongoDevices:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "devices": [
            IndexModel("imei", name="devices_by_imei", unique=True),
            IndexModel([("tenant_id", 1), ("_id", 1)], name="devices_by_tenant"),
        ],
        "commands": [
            IndexModel([("status", 1), ("device_id", 1)], name="commands_open"),
            IndexModel([("device_id", 1), ("seq", 1)], name="commands_by_seq"),
        ],
    }

    if TYPE_CHECKING:  # provided by MongoStore
        _db: AsyncDatabase[Document]

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...

    # -- devices -------------------------------------------------------------------------

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

    # -- downlink commands ---------------------------------------------------------------

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
