"""The alerting half of solewatch in the test's own event loop, and a scriptable SMTP server.

`start_alerting(smtp, **settings)` builds the notifications service over a
SqliteStore, the in-process bus and the outbox relay (the listener's part is
played by `Alerting.alarm`, which commits an ALARM frame); `smtp` is an
aiosmtpd server that records what it receives and can refuse or defer on
demand. tests/integration/conftest.py registers both fixtures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY

from services.context import ServiceContext
from services.notifications import NotificationsService
from shared.bus.memory import MemoryBus
from shared.bus.outbox import OutboxRelay
from shared.cache.memory import MemoryCache
from shared.config import Settings
from shared.protocols.xsole import Alarm
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store import Device, FrameRecord, StoreUnavailable, hash_device_token
from shared.store.alerts import Alert
from shared.store.audit import AuditEntry
from shared.store.sqlite import SqliteStore
from tests.helpers.process import free_port
from tests.helpers.stored import commit_frames

# Yesterday, midnight UTC: alarms must read as recent, or the store dates their alerts by receive time.
TS = int(time.time()) // 86400 * 86400 - 86400
SOS, FALL = 1, 2


async def eventually(check: Callable[[], Any], timeout: float = 5.0, *, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"{what} never held"
        await asyncio.sleep(0.02)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- a scriptable SMTP server -----------------------------------------------------------


class SmtpSink:
    """aiosmtpd handler collecting what it accepts; each address can be made to fail."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.data_attempts: Counter[str] = Counter()
        self.defer: dict[str, int] = {}  # address -> DATA attempts still answered 451
        self.refuse: set[str] = set()  # addresses answered 550 at RCPT
        self.hang: dict[str, float] = {}  # address -> seconds DATA stalls before a 451
        self.tls: list[bool] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        address = envelope.rcpt_tos[0]
        self.data_attempts[address] += 1
        if address in self.hang:
            await asyncio.sleep(self.hang[address])
            return "451 4.3.0 stalled"
        if self.defer.get(address, 0) > 0:
            self.defer[address] -= 1
            return "451 4.3.0 try later"
        self.tls.append(session.ssl is not None)
        self.messages.append(message_from_bytes(envelope.content, policy=default_policy))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in m["To"]]


@pytest.fixture
def smtp() -> Any:
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    sink.port = controller.port  # type: ignore[attr-defined]
    try:
        yield sink
    finally:
        controller.stop()


# -- solewatch's alerting half, in this event loop ----------------------------------------------


class FakeCommands:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, bytes]] = []
        self.failing = False

    async def send_command(
        self, *, device_id: int, cmd: int, args: bytes = b"", audit: AuditEntry | None = None
    ) -> int:
        if self.failing:
            raise StoreUnavailable("database is locked")
        self.sent.append((device_id, cmd, args))
        return len(self.sent)

    async def revoke_device(self, imei: str) -> None:
        pass  # no listener here


@dataclass
class Alerting:
    settings: Settings
    store: SqliteStore
    relay: OutboxRelay
    service: NotificationsService
    context: ServiceContext
    commands: FakeCommands
    seq: int = 0
    stopped: bool = field(default=False)

    @property
    def tenant_id(self) -> int:
        return 1

    async def device(self, imei: str = "356307042441013", name: str = "Simulated worker 3") -> Device:
        tenant_id = await self.store.ensure_tenant("acme")
        return await self.store.add_device(
            tenant_id=tenant_id, imei=imei, name=name, token_hash=hash_device_token(b"x")
        )

    async def contact(
        self, device: Device, name: str, email: str | None, kinds: tuple[str, ...] = (), phone: str | None = None
    ):
        return await self.store.add_contact(
            tenant_id=device.tenant_id, name=name, email=email, phone=phone, kinds=kinds
        )

    async def alarm(self, device: Device, *, kind: int = SOS, fix: bool = True, seq: int | None = None) -> None:
        """The listener's part: an ALARM frame committed with its outbox message."""
        if seq is None:
            self.seq += 1
            seq = self.seq
        event = Alarm(
            seq=seq,
            ts=TS,
            kind=kind,
            lat_e7=436163000 if fix else 0,
            lon_e7=70553000 if fix else 0,
            battery=87,
            flags=FLAG_FIX_VALID if fix else 0,
        )
        await commit_frames(self.store, [FrameRecord(device.id, device.tenant_id, device.imei, event, time.time())])
        self.relay.notify()

    async def settle(self) -> None:
        """Until everything committed has been relayed, judged by the detectors (without
        waiting for their coalescing delay), and every send has ended."""

        async def quiet() -> bool:
            return not await self.store.outbox_pending(1)

        await eventually(quiet)
        await self.service.detection.flush()
        await eventually(quiet)
        await self.service.dispatcher.idle()

    async def alerts(self) -> list[Alert]:
        return await self.store.alerts(self.tenant_id)

    async def actions(self, alert: Alert) -> list[tuple[str, dict[str, Any]]]:
        return [(e.action, e.detail) for e in await self.store.alert_timeline(alert.tenant_id, alert.id)]

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self.relay.drain()
        await self.service.drain()
        await self.service.close()
        await self.relay.close()
        await self.store.close()


@pytest.fixture
async def start_alerting(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Alerting]]]:
    started: list[Alerting] = []

    async def start(smtp: SmtpSink | None, **overrides: Any) -> Alerting:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "smtp_host": "127.0.0.1" if smtp else None,
            "smtp_port": getattr(smtp, "port", 25),
            "smtp_starttls": False,
            "smtp_timeout": 5,
            "smtp_from": "solewatch <alerts@solewatch.test>",
            "notification_backoff": 0.01,
            "notification_backoff_max": 0.04,
            "notification_drain_timeout": 2,
        }
        values.update(overrides)
        settings = Settings(**values)
        store = SqliteStore(settings.sqlite_path, synchronous="NORMAL")
        await store.open()
        bus = MemoryBus(first_backoff=0.01)
        relay = OutboxRelay(store, bus, poll_interval=0.05)
        store.on_write = relay.notify
        commands = FakeCommands()
        context = ServiceContext(settings=settings, store=store, cache=MemoryCache(), bus=bus, commands=commands)
        service = NotificationsService(context)
        await service.start()
        await relay.start()
        alerting = Alerting(settings, store, relay, service, context, commands)
        started.append(alerting)
        return alerting

    yield start
    for alerting in started:
        await alerting.stop()
