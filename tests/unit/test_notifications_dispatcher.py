"""The dispatcher's own rules, over an in-memory store and scripted notifiers."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from services.notifications.dispatcher import DispatchPolicy, NotificationDispatcher
from services.notifications.notifier import AlertNotice, NotificationFailed
from shared.bus import Message
from shared.store.alerts import Contact

FAST = DispatchPolicy(max_attempts=3, first_backoff=0.001, max_backoff=0.002, drain_timeout=0.05)


class LedgerStore:
    """The few store methods the dispatcher's hot path uses."""

    def __init__(self, contacts: list[Contact]):
        self._contacts = contacts
        self.notifications: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.events: list[tuple[int, str, dict[str, Any]]] = []

    async def contacts(self, tenant_id: int) -> list[Contact]:
        return [c for c in self._contacts if c.tenant_id == tenant_id]

    async def claim_notification(self, *, alert_id: int, contact_id: int, channel: str, step: int) -> bool:
        key = (alert_id, contact_id, channel, step)
        if key in self.notifications:
            return False
        self.notifications[key] = {"status": "claimed", "attempts": 0}
        return True

    async def finish_notification(
        self,
        *,
        alert_id: int,
        contact_id: int,
        channel: str,
        step: int,
        status: str,
        attempts: int,
        error: str | None = None,
        provider_id: str | None = None,
    ) -> None:
        self.notifications[(alert_id, contact_id, channel, step)] = {"status": status, "attempts": attempts}

    async def add_alert_event(self, alert_id: int, *, action: str, actor: str | None, detail: dict[str, Any]) -> None:
        self.events.append((alert_id, action, detail))

    async def device_by_imei(self, imei: str) -> None:
        return None

    async def escalation_policy(self, tenant_id: int) -> None:
        return None  # no policy: every matching contact at step 1

    async def tenant(self, tenant_id: int) -> None:
        return None

    def status(self, contact_id: int, channel: str = "email") -> tuple[str, int]:
        record = self.notifications[(1, contact_id, channel, 1)]
        return record["status"], record["attempts"]


class ScriptedNotifier:
    def __init__(
        self, channel: str = "email", *, failures: dict[str, list[Exception]] | None = None, delay: float = 0.0
    ):
        self.channel = channel
        self.failures = failures or {}
        self.delay = delay
        self.sent: list[str] = []
        self.concurrent = self.max_concurrent = 0

    def reaches(self, contact: Contact) -> bool:
        return contact.email is not None

    async def send(self, *, contact: Contact, notice: AlertNotice) -> None:
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await asyncio.sleep(self.delay)
            script = self.failures.get(contact.name)
            if script:
                raise script.pop(0)
            self.sent.append(contact.name)
        finally:
            self.concurrent -= 1


def contact(id_: int, name: str, *, kinds: tuple[str, ...] = (), email: bool = True) -> Contact:
    return Contact(id_, 1, name, f"{name.lower()}@acme.test" if email else None, None, kinds, 0.0)


def created(kind: str = "sos", event: str = "created") -> Message:
    alert = {
        "id": 1,
        "imei": "356307042441013",
        "kind": kind,
        "ts": "2026-01-01T00:00:00Z",
        "lat": None,
        "lon": None,
        "battery": None,
        "status": "open",
    }
    return Message("alert", orjson.dumps({"event": event, "tenant_id": 1, "alert": alert}), "outbox-1")


async def test_only_new_alerts_are_notified():
    store = LedgerStore([contact(1, "Ana")])
    notifier = ScriptedNotifier()
    dispatcher = NotificationDispatcher(store, [notifier], policy=FAST)  # type: ignore[arg-type]
    await dispatcher.handle(created(event="acknowledged"))
    await dispatcher.handle(created(event="resolved"))
    await dispatcher.idle()
    assert notifier.sent == [] and store.notifications == {}


async def test_each_reachable_contact_on_each_channel_once():
    store = LedgerStore([contact(1, "Ana"), contact(2, "Bob", kinds=("fall",)), contact(3, "Cy", email=False)])
    # SMS and email: the channels an alert without an escalation policy goes out on.
    email, pager = ScriptedNotifier("email"), ScriptedNotifier("sms")
    dispatcher = NotificationDispatcher(store, [email, pager], policy=FAST)  # type: ignore[arg-type]
    await asyncio.gather(*(dispatcher.handle(created()) for _ in range(3)))
    await dispatcher.idle()
    assert (email.sent, pager.sent) == (["Ana"], ["Ana"])
    assert set(store.notifications) == {(1, 1, "email", 1), (1, 1, "sms", 1)}


async def test_transient_errors_are_retried_until_the_last_attempt():
    store = LedgerStore([contact(1, "Ana"), contact(2, "Bob"), contact(3, "Cy")])
    notifier = ScriptedNotifier(
        failures={
            "Ana": [NotificationFailed("451"), NotificationFailed("451")],  # delivered at the third attempt
            "Bob": [NotificationFailed("451")] * 3,  # never
            "Cy": [RuntimeError("notifier bug")],  # an unexpected error counts as transient
        }
    )
    dispatcher = NotificationDispatcher(store, [notifier], policy=FAST)  # type: ignore[arg-type]
    await dispatcher.handle(created())
    await dispatcher.idle()
    assert sorted(notifier.sent) == ["Ana", "Cy"]
    assert (store.status(1), store.status(2), store.status(3)) == (("sent", 3), ("failed", 3), ("sent", 2))
    assert sorted((e[1], e[2]["contact"]) for e in store.events) == [
        ("notification_failed", "Bob"),
        ("notified", "Ana"),
        ("notified", "Cy"),
    ]


async def test_a_permanent_error_is_not_retried():
    store = LedgerStore([contact(1, "Ana")])
    notifier = ScriptedNotifier(failures={"Ana": [NotificationFailed("550 no such user", permanent=True)]})
    dispatcher = NotificationDispatcher(store, [notifier], policy=FAST)  # type: ignore[arg-type]
    await dispatcher.handle(created())
    await dispatcher.idle()
    assert store.status(1) == ("failed", 1)
    [(_, action, detail)] = store.events
    assert action == "notification_failed" and detail["error"] == "550 no such user"


async def test_sends_in_progress_are_bounded():
    store = LedgerStore([contact(n, f"C{n}") for n in range(1, 11)])
    notifier = ScriptedNotifier(delay=0.01)
    dispatcher = NotificationDispatcher(store, [notifier], policy=DispatchPolicy(concurrency=3))  # type: ignore[arg-type]
    await dispatcher.handle(created())
    await dispatcher.idle()
    assert len(notifier.sent) == 10 and notifier.max_concurrent == 3


async def test_drain_hands_unfinished_sends_back_and_later_alerts_wait_for_the_next_start():
    store = LedgerStore([contact(1, "Ana")])
    notifier = ScriptedNotifier(delay=5)
    dispatcher = NotificationDispatcher(store, [notifier], policy=FAST)  # type: ignore[arg-type]
    await dispatcher.handle(created())
    await asyncio.sleep(0.01)
    await dispatcher.drain()
    assert store.status(1) == ("interrupted", 1)
    store._contacts.append(contact(2, "Bob"))
    await dispatcher.handle(created())  # delivered while stopping: claimed, not sent
    assert store.status(2) == ("interrupted", 0)
    assert notifier.sent == []


async def test_without_channels_nobody_is_claimed():
    store = LedgerStore([contact(1, "Ana")])
    dispatcher = NotificationDispatcher(store, [], policy=FAST)  # type: ignore[arg-type]
    await dispatcher.handle(created())
    assert store.notifications == {}
