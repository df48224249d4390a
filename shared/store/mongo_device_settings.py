"""MongoDB adapter, per-device detection settings (a mixin of MongoStore)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from shared.store.device_settings import DeviceSettings

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


class MongoDeviceSettings:
    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...

    async def device_settings(self, device_id: int) -> DeviceSettings:
        async with self._read() as db:
            doc = await db.device_settings.find_one({"_id": device_id})
        return DeviceSettings(offline_after=doc["offline_after"], shift=doc["shift"]) if doc else DeviceSettings()

    async def set_device_settings(self, device_id: int, settings: DeviceSettings) -> None:
        async with self._write() as db:
            await db.device_settings.replace_one(
                {"_id": device_id}, {"_id": device_id, **settings.as_dict()}, upsert=True
            )
