"""New alerts become notifications: every matching contact, every channel that reaches them, once.

The bus handler only decides who is told and claims each notification in the
store (the claim is the exactly-once key, so a redelivered `alert` message or a
second notifications process sends nothing twice); sending, retries and backoff
run in background tasks, so a slow or failing recipient delays neither the
others nor the bus. A notification whose sender stopped or died stays claimed
in the store and is re-driven (see shared/alerts/ledger.py): a crash delays it,
and at worst sends it twice, but never loses it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from services.context import CommandSender
from services.notifications.actions import tell_device_acknowledged
from services.notifications.metrics import (
    notification_attempts,
    notification_seconds,
    notifications_failed,
    notifications_in_flight,
    notifications_redriven,
    notifications_sent,
)
from services.notifications.notifier import AlertNotice, NotificationFailed, Notifier
from shared.alerts import alert_to_api
from shared.alerts.ledger import (
    CHANNEL_DEVICE,
    NotificationKey,
    NotificationRecord,
    NotificationRecovery,
)
from shared.alerts.worker import worker_name
from shared.bus import Message
from shared.config import Settings
from shared.logging import get_logger
from shared.store import NotificationsStore
from shared.store.alerts import Contact
from shared.store.escalation import DEFAULT_CHANNELS

log = get_logger("solewatch.notifications")

FIRST_STEP = 1  # later escalation steps (services/notifications/escalation.py) get 2, 3...


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    max_attempts: int = 5
    first_backoff: float = 1.0
    max_backoff: float = 16.0
    concurrency: int = 20
    claim_timeout: float = 300.0
    drain_timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchPolicy:
        return cls(
            max_attempts=settings.notification_max_attempts,
            first_backoff=settings.notification_backoff,
            max_backoff=settings.notification_backoff_max,
            concurrency=settings.notification_concurrency,
            claim_timeout=settings.notification_claim_timeout,
            drain_timeout=settings.notification_drain_timeout,
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1, 2, 4, 8... capped)."""
        return float(min(self.first_backoff * 2 ** (attempt - 1), self.max_backoff))


def wants(contact: Contact, kind: str) -> bool:
    """An empty kinds list means every kind."""
    return not contact.kinds or kind in contact.kinds


class NotificationDispatcher:
    def __init__(
        self,
        store: NotificationsStore,
        notifiers: Iterable[Notifier],
        *,
        policy: DispatchPolicy | None = None,
        commands: CommandSender | None = None,
    ):
        self._store = store
        self._commands = commands
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: set[NotificationKey] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False
        self.configure(notifiers, policy or DispatchPolicy())

    def configure(self, notifiers: Iterable[Notifier], policy: DispatchPolicy) -> None:
        """New notifiers and policy for sends started from now on (SIGHUP)."""
        self._notifiers = {notifier.channel: notifier for notifier in notifiers}
        self.policy = policy
        self._semaphore = asyncio.Semaphore(policy.concurrency)

    @property
    def channels(self) -> list[str]:
        return list(self._notifiers)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Re-drive notifications left unfinished, now and then periodically."""
        self._stopping = False
        self._sweeper = asyncio.create_task(self._sweep(), name="notification-recovery")

    async def drain(self) -> None:
        """Wait a bounded time for sends in progress; hand the rest back to the store for the next start."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        tasks = set(self._tasks)
        if tasks:
            log.info("notifications_draining", in_flight=len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=self.policy.drain_timeout)
            await self._cancel(pending)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self._cancel(set(self._tasks))

    async def idle(self) -> None:
        """Until no send is in progress (tests, benchmarks)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _cancel(self, tasks: set[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
            log.warning("notifications_interrupted", count=len(tasks))

    # -- the bus handler --------------------------------------------------------------

    async def handle(self, message: Message) -> None:
        event = orjson.loads(message.payload)
        if event.get("event") != "created":
            return  # acknowledgements and resolutions notify nobody (yet)
        alert, tenant_id = event["alert"], event["tenant_id"]
        contacts = await self._store.contacts(tenant_id)
        policy = await self._store.escalation_policy(tenant_id)
        first = policy.step(FIRST_STEP) if policy else None
        channels = DEFAULT_CHANNELS  # without a policy, as before steps named channels: no calls
        if policy is not None and first is not None:
            contacts = [contact for contact in contacts if contact.id in first.contact_ids]
            channels = first.channels
            if policy.step(FIRST_STEP + 1) is not None:
                # Idempotent: a redelivered alert keeps the plan made the first time.
                await self._store.schedule_escalation(
                    alert_id=alert["id"], tenant_id=tenant_id, step=FIRST_STEP + 1, due_at=time.time() + first.wait_s
                )
        await self.notify(tenant_id, alert, contacts, step=FIRST_STEP, channels=channels, message_id=message.message_id)

    async def notify(
        self,
        tenant_id: int,
        alert: dict[str, Any],
        contacts: Iterable[Contact],
        *,
        step: int,
        channels: Collection[str] = DEFAULT_CHANNELS,
        message_id: str | None = None,
    ) -> None:
        """Tell `contacts` who want this kind of alert, through each of `channels` that is configured
        and reaches them, once per step."""
        notifiers = [notifier for notifier in self._notifiers.values() if notifier.channel in channels]
        if not notifiers:
            log.warning(
                "alert_not_notified",
                alert_id=alert["id"],
                step=step,
                channels=list(channels),
                reason="none of these channels is configured",
            )
            return
        notice: AlertNotice | None = None
        for contact in contacts:
            if not wants(contact, alert["kind"]):
                continue
            reaching = [notifier for notifier in notifiers if notifier.reaches(contact)]
            if not reaching:
                log.warning(
                    "contact_unreachable",
                    alert_id=alert["id"],
                    contact_id=contact.id,
                    channels=[n.channel for n in notifiers],
                )
            for notifier in reaching:
                key = NotificationKey(alert["id"], contact.id, notifier.channel, step)
                if not await self._store.claim_notification(**key._asdict()):
                    log.info(
                        "notification_already_claimed",
                        alert_id=key.alert_id,
                        contact_id=contact.id,
                        channel=key.channel,
                        step=step,
                        message_id=message_id,
                    )
                    continue
                if self._stopping:  # too late to send: the next start does
                    await self._store.finish_notification(**key._asdict(), status="interrupted", attempts=0)
                    continue
                notice = notice or await self._notice(tenant_id, alert)
                self._spawn(key, notifier, contact, notice)

    # -- sending ------------------------------------------------------------------------

    def _spawn(
        self, key: NotificationKey, notifier: Notifier, contact: Contact, notice: AlertNotice, attempts_before: int = 0
    ) -> None:
        self._in_flight.add(key)
        notifications_in_flight.inc()
        task = asyncio.create_task(
            self._deliver(key, notifier, contact, notice, attempts_before),
            name=f"notify-{key.alert_id}-{key.contact_id}-{key.channel}",
        )
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._in_flight.discard(key)
            notifications_in_flight.dec()

        task.add_done_callback(done)

    async def _deliver(
        self, key: NotificationKey, notifier: Notifier, contact: Contact, notice: AlertNotice, attempts_before: int
    ) -> None:
        fields: dict[str, Any] = {"alert_id": key.alert_id, "contact_id": key.contact_id, "channel": key.channel}
        attempts, error, decided = attempts_before, None, False
        try:
            for attempt in range(1, self.policy.max_attempts + 1):
                attempts += 1
                error, permanent, provider_id = await self._attempt(notifier, contact, notice)
                if error is None:
                    decided = True
                    log.info("notification_sent", **fields, attempts=attempts)
                    notifications_sent.labels(key.channel).inc()
                    await self._record(key, contact, "sent", attempts, None, provider_id=provider_id)
                    return
                if permanent or attempt == self.policy.max_attempts:
                    decided = True
                    log.error("notification_failed", **fields, attempts=attempts, error=error, permanent=permanent)
                    notifications_failed.labels(key.channel).inc()
                    await self._record(key, contact, "failed", attempts, error)
                    return
                delay = self.policy.backoff(attempt)
                log.warning("notification_attempt_failed", **fields, attempt=attempts, error=error, retry_in=delay)
                # Touch the claim: still being worked on, not abandoned.
                await self._store.finish_notification(**key._asdict(), status="claimed", attempts=attempts, error=error)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if not decided:  # stopping: the next start sends it without waiting for the claim to go stale
                try:
                    await self._store.finish_notification(
                        **key._asdict(), status="interrupted", attempts=attempts, error=error
                    )
                except Exception:
                    log.exception("notification_not_handed_back", **fields)
            raise
        except Exception:  # the store failed us; the claim stays and is re-driven once stale
            log.exception("notification_bookkeeping_failed", **fields, attempts=attempts)

    async def _attempt(
        self, notifier: Notifier, contact: Contact, notice: AlertNotice
    ) -> tuple[str | None, bool, str | None]:
        """One send: (None, False, provider id) when it went through, else (error, permanent, None)."""
        provider_id: str | None = None
        async with self._semaphore:
            started = time.perf_counter()
            try:
                provider_id = await notifier.send(contact=contact, notice=notice)
                outcome, error, permanent = "sent", None, False
            except NotificationFailed as exc:
                permanent = exc.permanent
                outcome, error = ("permanent_error" if permanent else "transient_error"), str(exc)
            except Exception as exc:  # a notifier bug must not kill the retries of others
                log.exception("notifier_crashed", channel=notifier.channel)
                outcome, error, permanent = "transient_error", f"{type(exc).__name__}: {exc}", False
            finally:
                notification_seconds.labels(notifier.channel).observe(time.perf_counter() - started)
        notification_attempts.labels(notifier.channel, outcome).inc()
        return error, permanent, provider_id

    async def _record(
        self,
        key: NotificationKey,
        contact: Contact,
        status: str,
        attempts: int,
        error: str | None,
        *,
        provider_id: str | None = None,
    ) -> None:
        await self._store.finish_notification(
            **key._asdict(), status=status, attempts=attempts, error=error, provider_id=provider_id
        )
        detail: dict[str, Any] = {
            "channel": key.channel,
            "contact_id": contact.id,
            "contact": contact.name,
            "attempts": attempts,
        }
        if error is not None:
            detail["error"] = error
        await self._store.add_alert_event(
            key.alert_id, action="notified" if status == "sent" else "notification_failed", actor=None, detail=detail
        )

    async def _notice(self, tenant_id: int, alert: dict[str, Any]) -> AlertNotice:
        """The alert with the worker's and the tenant's names; names are a nicety, never a reason not to send."""
        device_name = tenant_name = None
        try:
            stored = await self._store.alert(tenant_id, alert["id"])
            device_name = None if stored is None else await worker_name(self._store, stored)
            tenant = await self._store.tenant(tenant_id)
            tenant_name = tenant.name if tenant is not None else None
        except Exception as exc:
            log.info("notice_names_missing", alert_id=alert["id"], error=repr(exc))
        return AlertNotice(alert=alert, tenant_id=tenant_id, device_name=device_name, tenant_name=tenant_name)

    # -- recovery -----------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            try:
                await self.recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notification_recovery_failed")
            await asyncio.sleep(self.policy.claim_timeout / 4)

    async def recover(self) -> int:
        """Take over notifications left unfinished (interrupted, or claimed and silent for
        `claim_timeout`) and send them again; how many were taken over."""
        store = self._store
        if not isinstance(store, NotificationRecovery):
            return 0
        stale_before = time.time() - self.policy.claim_timeout
        redriven = 0
        for record in await store.unfinished_notifications(stale_before=stale_before):
            key = NotificationKey(record.alert_id, record.contact_id, record.channel, record.step)
            if self._stopping or key in self._in_flight or (key.channel == CHANNEL_DEVICE and self._commands is None):
                continue
            if not await store.reclaim_notification(record):
                continue  # another process took it, or its sender came back to life
            notifications_redriven.labels(key.channel).inc()
            log.warning(
                "notification_redriven",
                alert_id=key.alert_id,
                contact_id=key.contact_id,
                channel=key.channel,
                previous_status=record.status,
                attempts=record.attempts,
            )
            await self._redrive(key, record)
            redriven += 1
        return redriven

    async def _redrive(self, key: NotificationKey, record: NotificationRecord) -> None:
        alert = await self._store.alert(record.tenant_id, record.alert_id)
        if alert is not None and key.channel == CHANNEL_DEVICE:
            assert self._commands is not None
            await tell_device_acknowledged(self._store, self._commands, alert, claimed=True)
            return
        contact = next((c for c in await self._store.contacts(record.tenant_id) if c.id == key.contact_id), None)
        notifier = self._notifiers.get(key.channel)
        if alert is None or alert.status == "resolved" or contact is None:
            # Nobody left to tell, or nothing left worth telling: a late SOS email
            # about an alert already resolved would only mislead.
            await self._store.finish_notification(
                **key._asdict(),
                status="cancelled",
                attempts=record.attempts,
                error="alert resolved" if alert else "alert or contact gone",
            )
            return
        if notifier is None or not notifier.reaches(contact):
            notifications_failed.labels(key.channel).inc()
            await self._record(key, contact, "failed", record.attempts, f"channel {key.channel} no longer configured")
            return
        self._spawn(key, notifier, contact, await self._notice(record.tenant_id, alert_to_api(alert)), record.attempts)
