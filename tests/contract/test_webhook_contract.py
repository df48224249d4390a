"""The partner webhook port (shared/store/webhooks.py) for every store adapter: endpoints per tenant
with their audit entries, deliveries queued once per (endpoint, event), read newest first, and the
lease that lets one sender at a time hold a delivery."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared.store import Store
from shared.store.audit import Actor, AuditEntry
from shared.store.mongo import MongoStore
from shared.store.webhooks import AttemptOutcome

ADMIN = Actor("user", "1", "admin@example.com")


def entry(tenant_id: int, action: str, target_id: str | None = None, **detail: Any) -> AuditEntry:
    return AuditEntry(tenant_id, ADMIN, action, "webhook_endpoint", target_id, detail)


async def add_endpoint(store: Store, tenant_id: int, url: str = "https://hooks.example/a", **kw: Any):
    return await store.add_webhook_endpoint(
        tenant_id=tenant_id,
        url=url,
        events=kw.get("events", ("alert.raised", "ping")),
        description=kw.get("description"),
        secret=kw.get("secret", "whsec_test"),
        audit=kw.get("audit"),
    )


async def test_an_endpoint_is_kept_with_its_secret_and_its_audit_entry(store: Store) -> None:
    acme, other = await store.ensure_tenant("acme"), await store.ensure_tenant("other")
    endpoint = await add_endpoint(
        store, acme, description="ARC", secret="whsec_abc", audit=entry(acme, "webhook.create", url="x")
    )
    assert (endpoint.url, endpoint.events, endpoint.description, endpoint.enabled, endpoint.secret) == (
        "https://hooks.example/a",
        ("alert.raised", "ping"),
        "ARC",
        True,
        "whsec_abc",
    )
    assert await store.webhook_endpoint(acme, endpoint.id) == endpoint
    assert await store.webhook_endpoint(other, endpoint.id) is None
    assert await store.webhook_endpoints(other) == []
    [logged] = await store.audit_log(acme)
    assert (logged.entry.action, logged.entry.target_id) == ("webhook.create", str(endpoint.id))


async def test_endpoints_page_oldest_first(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    made = [await add_endpoint(store, acme, f"https://hooks.example/{n}") for n in range(5)]
    first = await store.webhook_endpoints(acme, limit=2)
    rest = await store.webhook_endpoints(acme, after_id=first[-1].id)
    assert [e.id for e in first + rest] == [e.id for e in made]


async def test_an_update_changes_only_what_is_given_and_is_audited(store: Store) -> None:
    acme, other = await store.ensure_tenant("acme"), await store.ensure_tenant("other")
    endpoint = await add_endpoint(store, acme, description="keep")
    assert await store.update_webhook_endpoint(other, endpoint.id, enabled=False) is None
    changed = await store.update_webhook_endpoint(
        acme, endpoint.id, enabled=False, events=["alert.resolved"], audit=entry(acme, "webhook.update", "x")
    )
    assert changed is not None
    assert (changed.url, changed.events, changed.enabled, changed.description) == (
        endpoint.url,
        ("alert.resolved",),
        False,
        "keep",
    )
    assert await store.webhook_endpoint(acme, endpoint.id) == changed
    assert [r.entry.action for r in await store.audit_log(acme)] == ["webhook.update"]
    assert await store.subscribed_webhook_endpoints(acme, "alert.resolved") == []  # disabled
    await store.update_webhook_endpoint(acme, endpoint.id, enabled=True)
    assert [e.id for e in await store.subscribed_webhook_endpoints(acme, "alert.resolved")] == [endpoint.id]
    assert await store.subscribed_webhook_endpoints(acme, "alert.raised") == []


async def test_a_delete_takes_the_deliveries_with_it_and_is_audited(store: Store) -> None:
    acme, other = await store.ensure_tenant("acme"), await store.ensure_tenant("other")
    endpoint = await add_endpoint(store, acme)
    await store.queue_webhook_event(
        tenant_id=acme, endpoint_ids=[endpoint.id], event_id="evt_1", type="ping", payload=b"{}", at=1.0
    )
    assert not await store.delete_webhook_endpoint(other, endpoint.id, audit=entry(other, "webhook.delete"))
    assert await store.audit_log(other) == []
    assert await store.delete_webhook_endpoint(acme, endpoint.id, audit=entry(acme, "webhook.delete", "1"))
    assert await store.webhook_endpoint(acme, endpoint.id) is None
    assert await store.webhook_deliveries(acme, endpoint.id) == []
    assert await store.claim_webhook_deliveries(owner="a", now=2.0, lease_s=10, limit=10) == []
    assert [r.entry.action for r in await store.audit_log(acme)] == ["webhook.delete"]
    assert not await store.delete_webhook_endpoint(acme, endpoint.id)


async def test_an_event_is_owed_once_per_endpoint_and_read_newest_first(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    a, b = await add_endpoint(store, acme), await add_endpoint(store, acme, "https://hooks.example/b")
    body = b'{"id":"evt_1"}'
    assert (
        await store.queue_webhook_event(
            tenant_id=acme, endpoint_ids=[a.id, b.id], event_id="evt_1", type="alert.raised", payload=body, at=10.0
        )
        == 2
    )
    # The same bus message heard again owes nothing new.
    assert (
        await store.queue_webhook_event(
            tenant_id=acme, endpoint_ids=[a.id, b.id], event_id="evt_1", type="alert.raised", payload=b"other", at=11.0
        )
        == 0
    )
    await store.queue_webhook_event(
        tenant_id=acme, endpoint_ids=[a.id], event_id="evt_2", type="ping", payload=b"{}", at=12.0
    )
    log = await store.webhook_deliveries(acme, a.id)
    assert [(d.event_id, d.status, d.attempts, d.next_attempt_at) for d in log] == [
        ("evt_2", "pending", 0, 12.0),
        ("evt_1", "pending", 0, 10.0),
    ]
    assert log[1].payload == body
    assert [d.event_id for d in await store.webhook_deliveries(acme, a.id, before_id=log[0].id)] == ["evt_1"]
    assert [d.event_id for d in await store.webhook_deliveries(acme, a.id, limit=1)] == ["evt_2"]


async def test_a_claimed_delivery_is_held_by_one_sender_until_its_lease_ends(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    endpoint = await add_endpoint(store, acme)
    for n in range(4):
        await store.queue_webhook_event(
            tenant_id=acme, endpoint_ids=[endpoint.id], event_id=f"evt_{n}", type="ping", payload=b"{}", at=float(n)
        )
    # Two senders claiming at once share the due deliveries without overlap.
    first, second = await asyncio.gather(
        store.claim_webhook_deliveries(owner="a", now=2.5, lease_s=30, limit=2),
        store.claim_webhook_deliveries(owner="b", now=2.5, lease_s=30, limit=2),
    )
    ids = [d.event_id for d in first + second]
    assert sorted(ids) == ["evt_0", "evt_1", "evt_2"]  # evt_3 is not due yet
    assert await store.claim_webhook_deliveries(owner="c", now=3.0, lease_s=30, limit=10) == [
        d for d in await store.webhook_deliveries(acme, endpoint.id) if d.event_id == "evt_3"
    ]
    # A sender that died: its deliveries come back once the lease has run out.
    again = await store.claim_webhook_deliveries(owner="d", now=40.0, lease_s=30, limit=10)
    assert len(again) == 4


async def test_attempts_recorded_together_each_count_as_alone(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    endpoint = await add_endpoint(store, acme)
    for n in range(3):
        await store.queue_webhook_event(
            tenant_id=acme, endpoint_ids=[endpoint.id], event_id=f"evt_{n}", type="ping", payload=b"{}", at=1.0
        )
    held = await store.claim_webhook_deliveries(owner="a", now=1.0, lease_s=30, limit=10)
    by_event = {d.event_id: d.id for d in held}
    assert await store.retry_webhook_delivery(acme, endpoint.id, "evt_2", now=1.5)  # its lease is dropped
    done = AttemptOutcome("delivered", 204, None, None, 2.0, 1.0)
    retry = AttemptOutcome("pending", 503, "HTTP 503", 31.0, None, 1.0)
    results = await store.finish_webhook_attempts(
        [(by_event["evt_0"], done), (by_event["evt_1"], retry), (by_event["evt_2"], done)], owner="a"
    )
    assert results == [True, True, False]
    log = {d.event_id: (d.status, d.attempts) for d in await store.webhook_deliveries(acme, endpoint.id)}
    assert log == {"evt_0": ("delivered", 1), "evt_1": ("pending", 1), "evt_2": ("pending", 0)}
    assert await store.finish_webhook_attempts([], owner="a") == []


async def test_an_attempt_is_recorded_only_by_the_lease_holder(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    endpoint = await add_endpoint(store, acme)
    await store.queue_webhook_event(
        tenant_id=acme, endpoint_ids=[endpoint.id], event_id="evt_1", type="ping", payload=b"{}", at=1.0
    )
    [held] = await store.claim_webhook_deliveries(owner="a", now=1.0, lease_s=30, limit=10)
    retry = AttemptOutcome("pending", 500, "HTTP 500", 31.0, None)
    assert not await store.finish_webhook_attempt(held.id, owner="b", outcome=retry)
    assert await store.finish_webhook_attempt(held.id, owner="a", outcome=retry)
    assert not await store.finish_webhook_attempt(held.id, owner="a", outcome=retry)  # released
    [after] = await store.webhook_deliveries(acme, endpoint.id)
    assert (after.status, after.attempts, after.last_status, after.last_error, after.next_attempt_at) == (
        "pending",
        1,
        500,
        "HTTP 500",
        31.0,
    )
    assert await store.claim_webhook_deliveries(owner="a", now=30.0, lease_s=30, limit=10) == []
    [held] = await store.claim_webhook_deliveries(owner="a", now=31.0, lease_s=30, limit=10)
    done = AttemptOutcome("delivered", 204, None, None, 32.0)
    assert await store.finish_webhook_attempt(held.id, owner="a", outcome=done)
    [after] = await store.webhook_deliveries(acme, endpoint.id)
    assert (after.status, after.attempts, after.last_status, after.delivered_at, after.next_attempt_at) == (
        "delivered",
        2,
        204,
        32.0,
        None,
    )


async def test_a_manual_retry_sends_again_even_when_delivered_or_held(store: Store) -> None:
    acme, other = await store.ensure_tenant("acme"), await store.ensure_tenant("other")
    endpoint = await add_endpoint(store, acme)
    await store.queue_webhook_event(
        tenant_id=acme, endpoint_ids=[endpoint.id], event_id="evt_1", type="ping", payload=b"{}", at=1.0
    )
    [held] = await store.claim_webhook_deliveries(owner="a", now=1.0, lease_s=30, limit=10)
    await store.finish_webhook_attempt(held.id, owner="a", outcome=AttemptOutcome("delivered", 200, None, None, 2.0))
    assert not await store.retry_webhook_delivery(other, endpoint.id, "evt_1", now=5.0)
    assert not await store.retry_webhook_delivery(acme, endpoint.id, "evt_404", now=5.0)
    assert await store.retry_webhook_delivery(acme, endpoint.id, "evt_1", now=5.0)
    [held] = await store.claim_webhook_deliveries(owner="b", now=5.0, lease_s=30, limit=10)
    assert (held.event_id, held.first_attempt_at) == ("evt_1", 5.0)
    # Retried while a sender holds it: the sender's late outcome does not overwrite the retry.
    assert await store.retry_webhook_delivery(acme, endpoint.id, "evt_1", now=6.0)
    assert not await store.finish_webhook_attempt(
        held.id, owner="b", outcome=AttemptOutcome("delivered", 200, None, None, 7.0)
    )
    assert [d.event_id for d in await store.claim_webhook_deliveries(owner="c", now=6.0, lease_s=30, limit=10)] == [
        "evt_1"
    ]


class Stopped(Exception):
    """The process 'stops' here."""


async def test_mongo_an_endpoint_created_but_stopped_before_its_entry_is_copied_gets_it_at_open(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = getattr(store, "_store", store)
    if not isinstance(mongo, MongoStore):
        pytest.skip("a MongoDB adapter's recovery: SQLite writes the change and its entry in one transaction")
    acme = await store.ensure_tenant("acme")

    async def stop(*args: Any) -> None:
        raise Stopped

    monkeypatch.setattr(mongo, "_settle_audit", stop)
    with pytest.raises(Stopped):
        await add_endpoint(store, acme, audit=entry(acme, "webhook.create"))
    monkeypatch.undo()
    [endpoint] = await store.webhook_endpoints(acme)
    assert await store.audit_log(acme) == []
    await mongo.open()
    assert [(r.entry.action, r.entry.target_id) for r in await store.audit_log(acme)] == [
        ("webhook.create", str(endpoint.id))
    ]


async def test_a_claim_leaves_an_endpoints_backlog_beyond_its_room_for_later(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    slow, fast = await add_endpoint(store, acme), await add_endpoint(store, acme, "https://hooks.example/fast")
    for n in range(5):  # the slow endpoint's backlog is due first
        await store.queue_webhook_event(
            tenant_id=acme, endpoint_ids=[slow.id], event_id=f"evt_s{n}", type="ping", payload=b"{}", at=float(n)
        )
    await store.queue_webhook_event(
        tenant_id=acme, endpoint_ids=[fast.id], event_id="evt_f", type="ping", payload=b"{}", at=9.0
    )
    claimed = await store.claim_webhook_deliveries(
        owner="a", now=10.0, lease_s=30, limit=10, per_endpoint=3, in_flight={slow.id: 1}
    )
    assert sorted(d.event_id for d in claimed) == ["evt_f", "evt_s0", "evt_s1"]


async def test_a_claim_that_finds_nothing_due_writes_nothing(store: Store) -> None:
    # The sender polls every second: an idle poll must not take the writer ingestion commits
    # through, nor wake the outbox relay (on_write).
    adapter = getattr(store, "_store", store)  # the emulator's wrapper keeps the adapter there
    writes: list[int] = []
    adapter.on_write = lambda: writes.append(1)
    assert await store.claim_webhook_deliveries(owner="a", now=time.time(), lease_s=60, limit=10) == []
    assert writes == []


# -- an endpoint that keeps failing, and the schedule after a manual retry ----------------------------


async def attempt_once(store: Store, tenant_id: int, endpoint_id: int, event_id: str, outcome: AttemptOutcome) -> bool:
    """Queue an event to the endpoint, claim it, and record one attempt of it."""
    await store.queue_webhook_event(
        tenant_id=tenant_id, endpoint_ids=[endpoint_id], event_id=event_id, type="ping", payload=b"{}", at=0.0
    )
    [held] = await store.claim_webhook_deliveries(owner="s", now=1.0, lease_s=30, limit=100)
    return await store.finish_webhook_attempt(held.id, owner="s", outcome=outcome)


def failure(sent_at: float | None) -> AttemptOutcome:
    return AttemptOutcome("pending", 500, "HTTP 500", 1e12, None, sent_at)  # retried long after these tests


async def test_failing_since_is_the_first_failure_since_a_delivery(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    endpoint = await add_endpoint(store, acme)
    assert endpoint.failing_since is None
    # An attempt never sent (the endpoint was disabled) says nothing of its health.
    await attempt_once(store, acme, endpoint.id, "evt_0", failure(None))
    assert (await store.webhook_endpoint(acme, endpoint.id)).failing_since is None
    await attempt_once(store, acme, endpoint.id, "evt_1", failure(10.0))
    await attempt_once(store, acme, endpoint.id, "evt_2", AttemptOutcome("failed", None, "timeout", None, None, 20.0))
    assert (await store.webhook_endpoint(acme, endpoint.id)).failing_since == 10.0
    await attempt_once(store, acme, endpoint.id, "evt_3", AttemptOutcome("delivered", 204, None, None, 31.0, 30.0))
    assert (await store.webhook_endpoint(acme, endpoint.id)).failing_since is None
    await attempt_once(store, acme, endpoint.id, "evt_4", failure(40.0))
    assert (await store.webhook_endpoint(acme, endpoint.id)).failing_since == 40.0
    # An outcome the store refuses (the lease is not the sender's) changes nothing either.
    await store.queue_webhook_event(
        tenant_id=acme, endpoint_ids=[endpoint.id], event_id="evt_5", type="ping", payload=b"{}", at=0.0
    )
    [held] = await store.claim_webhook_deliveries(owner="s", now=1.0, lease_s=30, limit=10)
    done = AttemptOutcome("delivered", 200, None, None, 51.0, 50.0)
    assert not await store.finish_webhook_attempt(held.id, owner="someone else", outcome=done)
    assert (await store.webhook_endpoint(acme, endpoint.id)).failing_since == 40.0


async def test_an_endpoint_failing_long_enough_is_disabled_once_with_its_entry(store: Store) -> None:
    acme, other = await store.ensure_tenant("acme"), await store.ensure_tenant("other")
    endpoint = await add_endpoint(store, acme)
    healthy = await add_endpoint(store, acme, "https://hooks.example/healthy")
    await attempt_once(store, acme, endpoint.id, "evt_1", failure(100.0))
    system = Actor.system("webhooks")

    def disabling(tenant_id: int, endpoint_id: int) -> AuditEntry:
        return AuditEntry(tenant_id, system, "webhook.disable", "webhook_endpoint", str(endpoint_id), {"why": "x"})

    # Failing since 100: not yet by 99; never an endpoint that is not failing, nor another tenant's.
    assert (
        await store.disable_failing_webhook_endpoint(
            acme, endpoint.id, failing_since_by=99.0, audit=disabling(acme, endpoint.id)
        )
        is None
    )
    assert (
        await store.disable_failing_webhook_endpoint(
            acme, healthy.id, failing_since_by=1e12, audit=disabling(acme, healthy.id)
        )
        is None
    )
    assert (
        await store.disable_failing_webhook_endpoint(
            other, endpoint.id, failing_since_by=1e12, audit=disabling(other, endpoint.id)
        )
        is None
    )
    assert await store.audit_log(acme) == [] and await store.audit_log(other) == []
    assert (await store.webhook_endpoint(acme, endpoint.id)).enabled

    # Two senders finding it failing at once: one disables it, and only its entry is written.
    results = await asyncio.gather(
        *(
            store.disable_failing_webhook_endpoint(
                acme, endpoint.id, failing_since_by=100.0, audit=disabling(acme, endpoint.id)
            )
            for _ in range(2)
        )
    )
    [disabled] = [r for r in results if r is not None]
    assert (disabled.id, disabled.enabled, disabled.failing_since) == (endpoint.id, False, 100.0)
    assert await store.webhook_endpoint(acme, endpoint.id) == disabled
    assert (
        await store.disable_failing_webhook_endpoint(
            acme, endpoint.id, failing_since_by=1e12, audit=disabling(acme, endpoint.id)
        )
        is None
    )
    [logged] = await store.audit_log(acme)
    assert (logged.entry.actor, logged.entry.action, logged.entry.target_id, logged.entry.detail) == (
        system,
        "webhook.disable",
        str(endpoint.id),
        {"why": "x"},
    )
    assert [e.id for e in await store.subscribed_webhook_endpoints(acme, "ping")] == [healthy.id]


async def test_enabling_again_gives_a_fresh_start(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    endpoint = await add_endpoint(store, acme)
    await attempt_once(store, acme, endpoint.id, "evt_1", failure(100.0))  # owed, next tried in 30,000 years
    await attempt_once(store, acme, endpoint.id, "evt_2", AttemptOutcome("delivered", 200, None, None, 91.0, 90.0))
    await attempt_once(store, acme, endpoint.id, "evt_3", failure(100.0))
    # Enabled already: an update saying so changes nothing of its failing, nor of what it is owed.
    same = await store.update_webhook_endpoint(acme, endpoint.id, enabled=True)
    assert same is not None and same.failing_since == 100.0
    assert {d.next_attempt_at for d in await store.webhook_deliveries(acme, endpoint.id)} == {1e12, None}
    await store.disable_failing_webhook_endpoint(acme, endpoint.id, failing_since_by=100.0)
    before = time.time()
    again = await store.update_webhook_endpoint(
        acme, endpoint.id, enabled=True, audit=entry(acme, "webhook.update", str(endpoint.id), enabled=True)
    )
    assert again is not None and (again.enabled, again.failing_since) == (True, None)
    assert await store.webhook_endpoint(acme, endpoint.id) == again
    assert await store.disable_failing_webhook_endpoint(acme, endpoint.id, failing_since_by=1e12) is None
    # What it is owed is due now, its schedule from the first step; what was delivered stays so.
    owed = {d.event_id: d for d in await store.webhook_deliveries(acme, endpoint.id)}
    for event_id in ("evt_1", "evt_3"):
        assert owed[event_id].status == "pending" and owed[event_id].next_attempt_at <= time.time()
        assert owed[event_id].next_attempt_at >= before and (
            owed[event_id].attempts,
            owed[event_id].window_attempts,
        ) == (1, 0)
    assert (owed["evt_2"].status, owed["evt_2"].next_attempt_at) == ("delivered", None)
    due = await store.claim_webhook_deliveries(owner="s", now=time.time(), lease_s=30, limit=10)
    assert sorted(d.event_id for d in due) == ["evt_1", "evt_3"]


async def test_a_manual_retry_starts_the_schedule_again_and_keeps_counting_attempts(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    endpoint = await add_endpoint(store, acme)
    await store.queue_webhook_event(
        tenant_id=acme, endpoint_ids=[endpoint.id], event_id="evt_1", type="ping", payload=b"{}", at=1.0
    )
    for n in range(3):
        [held] = await store.claim_webhook_deliveries(owner="s", now=100.0 * (n + 1), lease_s=30, limit=10)
        assert held.window_attempts == n
        retry = AttemptOutcome("pending", 500, "HTTP 500", 100.0 * (n + 2), None, 100.0 * (n + 1))
        await store.finish_webhook_attempt(held.id, owner="s", outcome=retry)
    assert await store.retry_webhook_delivery(acme, endpoint.id, "evt_1", now=1000.0)
    [held] = await store.claim_webhook_deliveries(owner="s", now=1000.0, lease_s=30, limit=10)
    assert (held.attempts, held.window_attempts, held.first_attempt_at) == (3, 0, 1000.0)
    await store.finish_webhook_attempt(held.id, owner="s", outcome=failure(1000.0))
    [after] = await store.webhook_deliveries(acme, endpoint.id)
    assert (after.attempts, after.window_attempts) == (4, 1)


async def test_mongo_an_endpoint_disabled_but_stopped_before_its_entry_is_copied_gets_it_at_open(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo = getattr(store, "_store", store)
    if not isinstance(mongo, MongoStore):
        pytest.skip("a MongoDB adapter's recovery: SQLite writes the change and its entry in one transaction")
    acme = await store.ensure_tenant("acme")
    endpoint = await add_endpoint(store, acme)
    await attempt_once(store, acme, endpoint.id, "evt_1", failure(100.0))

    async def stop(*args: Any) -> None:
        raise Stopped

    monkeypatch.setattr(mongo, "_settle_audit", stop)
    disabling = AuditEntry(acme, Actor.system("webhooks"), "webhook.disable", "webhook_endpoint", str(endpoint.id))
    with pytest.raises(Stopped):
        await store.disable_failing_webhook_endpoint(acme, endpoint.id, failing_since_by=100.0, audit=disabling)
    monkeypatch.undo()
    assert not (await store.webhook_endpoint(acme, endpoint.id)).enabled
    assert await store.audit_log(acme) == []
    await mongo.open()
    assert [(r.entry.action, r.entry.target_id) for r in await store.audit_log(acme)] == [
        ("webhook.disable", str(endpoint.id))
    ]


async def test_a_deleted_endpoints_id_never_names_another(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    first = await add_endpoint(store, acme)
    newest = await add_endpoint(store, acme, "https://hooks.example/b")
    assert await store.delete_webhook_endpoint(acme, newest.id)
    again = await add_endpoint(store, acme, "https://hooks.example/c")
    assert again.id not in (first.id, newest.id)
