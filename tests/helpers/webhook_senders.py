"""Webhook senders as the notifications service runs them, over each store adapter, for tests.

`start_senders(count, **settings)` (a fixture: import `start_senders_fixture`)
starts `count` WebhookSenders: on SQLite each over a handle of its own on the
one file (as separate processes have), on the MongoDB emulator all over the one
store (the emulator lives in this process).
Emails go to the `smtp` fixture's server.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from services.notifications.webhooks import WebhookSender
from shared.config import Settings
from shared.store.sqlite import SqliteStore
from tests.contract.mongo_shim import mongomock_store
from tests.helpers.alerting import SmtpSink

PUBLIC_URL = "https://solewatch.acme.example"
Senders = Callable[..., Awaitable[tuple[Any, list[WebhookSender]]]]


@pytest.fixture(name="start_senders", params=["sqlite", "mongomock"])
async def start_senders_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, smtp: SmtpSink
) -> AsyncIterator[Senders]:
    """`await start_senders(count, **settings)`: the store (the first handle) and `count` started senders."""
    async with AsyncExitStack() as stack:

        async def start(count: int = 1, **overrides: Any) -> tuple[Any, list[WebhookSender]]:
            values: dict[str, Any] = {
                "data_dir": tmp_path / "data",
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp.port,  # type: ignore[attr-defined]  (set by the smtp fixture)
                "smtp_starttls": False,
                "smtp_timeout": 5,
                "smtp_from": "solewatch <alerts@solewatch.test>",
                "public_url": PUBLIC_URL,
                "webhook_poll_interval": 0.05,
                "webhook_first_retry_max": 0.2,
            }
            settings = Settings(**(values | overrides))
            if request.param == "sqlite":
                stores = [await stack.enter_async_context(_sqlite(settings)) for _ in range(count)]
            else:
                stores = [await stack.enter_async_context(mongomock_store(wrap=lambda store: store))] * count
            senders = [WebhookSender(store, settings) for store in stores]
            for sender in senders:
                sender.start()
                stack.push_async_callback(sender.close)
            return stores[0], senders

        yield start


@asynccontextmanager
async def _sqlite(settings: Settings) -> AsyncIterator[SqliteStore]:
    """A handle of its own on the one SQLite file, as another process has."""
    store = SqliteStore(settings.sqlite_path, synchronous="NORMAL")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def owe(store: Any, senders: list[WebhookSender], tenant_id: int, endpoint_id: int, *names: str) -> None:
    """Queue ping events to the endpoint, due now, and wake the senders."""
    for name in names:
        event_id = "evt_" + name.encode().hex().ljust(24, "0")[:24]
        await store.queue_webhook_event(
            tenant_id=tenant_id,
            endpoint_ids=[endpoint_id],
            event_id=event_id,
            type="ping",
            payload=b"{}",
            at=time.time(),
        )
    for sender in senders:
        sender.wake.set()
