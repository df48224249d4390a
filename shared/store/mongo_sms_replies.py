"""MongoDB adapter, SMS reply codes and answered inbound messages (a mixin of MongoStore)."""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError

from shared.store.sms_replies import INBOUND_KEPT_S, ReplyCode, new_reply_code

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


class MongoSmsReplies:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        # The two uniqueness rules of a code; concurrent issues race on them and the loser retries.
        "sms_reply_codes": [
            IndexModel([("phone", 1), ("alert_id", 1)], name="sms_reply_codes_by_alert", unique=True),
            IndexModel([("phone", 1), ("code", 1)], name="sms_reply_codes_by_code", unique=True),
        ],
        "sms_inbound": [IndexModel("received_at", name="sms_inbound_by_time")],
    }

    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...

    async def issue_reply_code(self, *, tenant_id: int, alert_id: int, contact_id: int, phone: str) -> str:
        async with self._write() as db:
            while True:
                existing = await db.sms_reply_codes.find_one({"phone": phone, "alert_id": alert_id})
                if existing is not None:
                    return str(existing["code"])
                held = await db.sms_reply_codes.find({"phone": phone}).to_list(None)
                resolved = {
                    doc["_id"]
                    for doc in await db.alerts.find(
                        {"_id": {"$in": [h["alert_id"] for h in held]}, "status": "resolved"}, {"_id": 1}
                    ).to_list(None)
                }
                if resolved:  # resolved alerts give their codes back
                    await db.sms_reply_codes.delete_many({"phone": phone, "alert_id": {"$in": list(resolved)}})
                code = new_reply_code({h["code"] for h in held if h["alert_id"] not in resolved})
                try:
                    await db.sms_reply_codes.insert_one(
                        {
                            "phone": phone,
                            "alert_id": alert_id,
                            "code": code,
                            "tenant_id": tenant_id,
                            "contact_id": contact_id,
                            "created_at": time.time(),
                        }
                    )
                    return code
                except DuplicateKeyError:
                    continue  # a concurrent issue took that code, or this very (phone, alert): look again

    async def reply_codes(self, phone: str) -> list[ReplyCode]:
        async with self._read() as db:
            held = await db.sms_reply_codes.find({"phone": phone}).to_list(None)
            open_ids = {
                doc["_id"]: doc["tenant_id"]
                for doc in await db.alerts.find(
                    {"_id": {"$in": [h["alert_id"] for h in held]}, "status": {"$ne": "resolved"}},
                    {"_id": 1, "tenant_id": 1},
                ).to_list(None)
            }
        return sorted(
            (
                ReplyCode(h["phone"], h["code"], h["tenant_id"], h["alert_id"], h["contact_id"])
                for h in held
                if open_ids.get(h["alert_id"]) == h["tenant_id"]
            ),
            key=lambda r: r.alert_id,
        )

    async def inbound_sms_answer(self, message_sid: str) -> str | None:
        async with self._read() as db:
            doc = await db.sms_inbound.find_one({"_id": message_sid})
        return str(doc["answer"]) if doc else None

    async def remember_inbound_sms(self, message_sid: str, answer: str) -> None:
        async with self._write() as db:
            now = time.time()
            await db.sms_inbound.delete_many({"received_at": {"$lt": now - INBOUND_KEPT_S}})
            try:
                await db.sms_inbound.insert_one({"_id": message_sid, "answer": answer, "received_at": now})
            except DuplicateKeyError:
                pass  # a concurrent retry answered first; its answer stays
