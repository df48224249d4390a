"""An endpoint that keeps failing is disabled and its tenant's admins are emailed (issue 16, CONTRACT §7).

The notifications service's webhook senders over each store adapter
(tests/helpers/webhook_senders.py), a local receiver answering 503 to everything,
and aiosmtpd as the SMTP server. `webhook_disable_after` is cut to a second or two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from shared.store.accounts import OneTimeToken
from tests.helpers.alerting import SmtpSink, eventually
from tests.helpers.webhook_receiver import Receiver
from tests.helpers.webhook_senders import PUBLIC_URL, Senders, owe, start_senders_fixture  # noqa: F401

SECRET = "whsec_test-secret"


async def people(store: Any) -> tuple[int, int]:
    """acme with two active admins, an invited and a disabled admin, a supervisor and a viewer; and
    another tenant with an admin of its own."""
    acme, other = await store.ensure_tenant("acme"), await store.ensure_tenant("other")
    for email, role in [
        ("ana@acme.example", "admin"),
        ("ben@acme.example", "admin"),
        ("sam@acme.example", "supervisor"),
        ("vic@acme.example", "viewer"),
    ]:
        await store.create_user(tenant_id=acme, email=email, password_hash="x", role=role)
    invitation = OneTimeToken(b"\x01" * 32, time.time() + 3600)
    await store.create_user(
        tenant_id=acme, email="ivy@acme.example", password_hash="", role="admin", invitation=invitation
    )
    dan = await store.create_user(tenant_id=acme, email="dan@acme.example", password_hash="x", role="admin")
    await store.update_user(acme, dan.id, disabled=True)
    await store.create_user(tenant_id=other, email="olga@other.example", password_hash="x", role="admin")
    return acme, other


async def endpoint(store: Any, tenant_id: int, url: str) -> int:
    made = await store.add_webhook_endpoint(
        tenant_id=tenant_id, url=url, events=("ping",), description="Alarm centre", secret=SECRET
    )
    return int(made.id)


async def enabled(store: Any, tenant_id: int, endpoint_id: int) -> bool:
    return bool((await store.webhook_endpoint(tenant_id, endpoint_id)).enabled)


async def test_an_endpoint_failing_past_the_window_is_disabled_and_each_admin_emailed_once(
    start_senders: Senders, smtp: SmtpSink, receiver: Receiver
) -> None:
    store, senders = await start_senders(1, webhook_disable_after=1.0)
    acme, other = await people(store)
    endpoint_id = await endpoint(store, acme, receiver.url)
    healthy = await endpoint(store, other, f"{receiver.url}/other")  # another tenant's, failing too, but new
    receiver.down = True
    started = time.time()
    await owe(store, senders, acme, endpoint_id, "a", "b", "c")

    async def disabled() -> bool:
        return not await enabled(store, acme, endpoint_id)

    await eventually(disabled, timeout=10, what="the endpoint disabled")
    assert time.time() - started >= 1.0  # not before the window
    await eventually(lambda: len(smtp.messages) >= 2, what="the admins emailed")
    await asyncio.sleep(0.2)  # attempts that were under way when it was disabled end
    tries = len(receiver.received)
    # Something owed to it now is tried as disabled: nothing is sent, nothing is disabled or emailed again.
    await owe(store, senders, acme, endpoint_id, "e")

    async def tried_disabled() -> bool:
        [newest] = await store.webhook_deliveries(acme, endpoint_id, limit=1)
        return bool(newest.last_error == "the endpoint is disabled")

    await eventually(tried_disabled, what="an attempt while disabled")
    await asyncio.sleep(1.0)  # the owed deliveries keep being tried (as disabled) meanwhile
    # Another tenant's endpoint, failing too but for less than the window: neither disabled nor told.
    await owe(store, senders, other, healthy, "z")

    async def tried_healthy() -> bool:
        deliveries = await store.webhook_deliveries(other, healthy, limit=1)
        return bool(deliveries and deliveries[0].attempts >= 1)

    await eventually(tried_healthy, what="the other tenant's endpoint tried")

    assert sorted(message["To"] for message in smtp.messages) == ["ana@acme.example", "ben@acme.example"]
    mail = smtp.messages[0]
    assert f"Webhook endpoint {endpoint_id} disabled" in mail["Subject"]
    text = mail.get_content()
    stored = await store.webhook_endpoint(acme, endpoint_id)
    assert stored.failing_since is not None and started - 1 < stored.failing_since < started + 1
    for said in (
        receiver.url,
        "Alarm centre",
        "HTTP 503",  # the last error
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stored.failing_since)),
        f"PATCH {PUBLIC_URL}/api/v1/webhook-endpoints/{endpoint_id}",
        '{"enabled": true}',
    ):
        assert said in text, said
    [entry] = [record.entry for record in await store.audit_log(acme)]
    assert (entry.actor.type, entry.actor.label, entry.action, entry.target_id) == (
        "system",
        "webhooks",
        "webhook.disable",
        str(endpoint_id),
    )
    assert "HTTP 503" in entry.detail["last_error"] and entry.detail["reason"]
    assert await store.audit_log(other) == []
    # Nothing more went to the disabled endpoint; what it was owed is still owed, within its window.
    assert [r for r in receiver.received[tries:] if r.path == "/hooks"] == []
    assert {d.status for d in await store.webhook_deliveries(acme, endpoint_id)} == {"pending"}
    assert await enabled(store, other, healthy)  # failing for well under the window

    # Enabled again, with the receiver back: a fresh start, and everything it was owed is delivered.
    receiver.down = False
    assert (await store.update_webhook_endpoint(acme, endpoint_id, enabled=True)).failing_since is None

    async def all_delivered() -> bool:
        return {d.status for d in await store.webhook_deliveries(acme, endpoint_id)} == {"delivered"}

    await eventually(all_delivered, timeout=5, what="what it was owed delivered once enabled")
    assert len({r.headers["Solewatch-Event-Id"] for r in receiver.delivered() if r.path == "/hooks"}) == 4
    assert len(smtp.messages) == 2


async def test_enabled_again_an_endpoint_is_sent_what_it_is_owed_at_once(
    start_senders: Senders, smtp: SmtpSink, receiver: Receiver
) -> None:
    # First retries 15-30 s after a failure: only enabling again can make them due within the test.
    store, senders = await start_senders(1, webhook_disable_after=1.0, webhook_first_retry_max=30.0)
    acme, _ = await people(store)
    endpoint_id = await endpoint(store, acme, receiver.url)
    receiver.down = True
    await owe(store, senders, acme, endpoint_id, "a", "b")

    async def failed_once() -> bool:
        return all(d.attempts == 1 for d in await store.webhook_deliveries(acme, endpoint_id))

    await eventually(failed_once, what="a first failure each")
    await asyncio.sleep(1.1)
    await owe(store, senders, acme, endpoint_id, "c")
    await eventually(lambda: len(smtp.messages) == 2, what="disabled, and its admins told")
    assert not await enabled(store, acme, endpoint_id)

    receiver.down = False
    enabled_at = time.time()
    await store.update_webhook_endpoint(acme, endpoint_id, enabled=True)

    async def all_delivered() -> bool:
        return {d.status for d in await store.webhook_deliveries(acme, endpoint_id)} == {"delivered"}

    await eventually(all_delivered, timeout=3, what="what it was owed delivered at once")
    assert time.time() - enabled_at < 3
    assert len(receiver.delivered()) == 3


async def test_an_endpoint_that_recovers_within_the_window_starts_its_count_again(
    start_senders: Senders, smtp: SmtpSink, receiver: Receiver
) -> None:
    store, senders = await start_senders(1, webhook_disable_after=2.0)
    acme, _ = await people(store)
    endpoint_id = await endpoint(store, acme, receiver.url)
    receiver.down = True
    first = time.time()
    await owe(store, senders, acme, endpoint_id, "a")

    async def failing() -> bool:
        return (await store.webhook_endpoint(acme, endpoint_id)).failing_since is not None

    await eventually(failing, what="the first failure recorded")
    await asyncio.sleep(max(0.0, first + 1.2 - time.time()))
    receiver.down = False  # back for a moment: one event goes through
    await owe(store, senders, acme, endpoint_id, "b")

    async def recovered() -> bool:
        return (await store.webhook_endpoint(acme, endpoint_id)).failing_since is None

    await eventually(recovered, what="a delivery clearing failing_since")
    receiver.down = True
    await owe(store, senders, acme, endpoint_id, "c")
    await eventually(failing, what="failing again")
    # Past the window counted from the first failure, well within it counted from the recovery.
    await asyncio.sleep(max(0.0, first + 2.4 - time.time()))
    tries = len(receiver.received)
    await owe(store, senders, acme, endpoint_id, "d")
    await eventually(lambda: len(receiver.received) > tries, what="a failed attempt past 2 s from the first")
    await asyncio.sleep(0.3)
    assert await enabled(store, acme, endpoint_id)
    assert smtp.messages == [] and await store.audit_log(acme) == []


async def test_two_senders_over_one_store_disable_and_email_once(
    start_senders: Senders, smtp: SmtpSink, receiver: Receiver
) -> None:
    # A first retry no sooner than 15 s: nothing is retried during the test, so every attempt
    # after the window is one of the batch below, which both senders fail at the same moment.
    store, senders = await start_senders(2, webhook_disable_after=1.0, webhook_first_retry_max=30.0)
    claimed = [0, 0]
    for n, sender in enumerate(senders):
        sender.send_due = _counting(sender.send_due, claimed, n)  # type: ignore[method-assign]  (spying)
    acme, _ = await people(store)
    endpoint_id = await endpoint(store, acme, receiver.url)
    receiver.down = True
    await owe(store, senders, acme, endpoint_id, "first")

    async def failing() -> bool:
        return (await store.webhook_endpoint(acme, endpoint_id)).failing_since is not None

    await eventually(failing, what="the first failure recorded")
    await asyncio.sleep(1.1)
    await owe(store, senders, acme, endpoint_id, *"abcdefgh")  # 4 per sender: every slot

    async def disabled() -> bool:
        return not await enabled(store, acme, endpoint_id)

    await eventually(disabled, timeout=10, what="the endpoint disabled")
    await eventually(lambda: sum(claimed) == 9, what="every event tried")
    assert all(claimed), "both senders took part"
    await asyncio.sleep(0.5)  # the emails of a second disabling, if there were one
    assert sorted(message["To"] for message in smtp.messages) == ["ana@acme.example", "ben@acme.example"]
    assert [record.entry.action for record in await store.audit_log(acme)] == ["webhook.disable"]


def _counting(send_due: Callable[[], Awaitable[int]], claimed: list[int], n: int) -> Callable[[], Awaitable[int]]:
    async def counted() -> int:
        started = await send_due()
        claimed[n] += started
        return started

    return counted


async def test_an_admin_whose_address_is_refused_costs_the_others_nothing(
    start_senders: Senders, smtp: SmtpSink, receiver: Receiver
) -> None:
    store, senders = await start_senders(1, webhook_disable_after=0.5)
    smtp.refuse.add("ana@acme.example")  # 550 at RCPT: the message is never taken
    acme, _ = await people(store)
    endpoint_id = await endpoint(store, acme, receiver.url)
    receiver.down = True
    await owe(store, senders, acme, endpoint_id, "a", "b")
    await eventually(lambda: smtp.messages, timeout=10, what="an admin emailed")
    await asyncio.sleep(0.5)
    assert [message["To"] for message in smtp.messages] == ["ben@acme.example"]
    assert not await enabled(store, acme, endpoint_id)
    assert [record.entry.action for record in await store.audit_log(acme)] == ["webhook.disable"]


async def test_without_an_smtp_server_the_endpoint_is_still_disabled_and_audited(
    start_senders: Senders, smtp: SmtpSink, receiver: Receiver
) -> None:
    store, senders = await start_senders(1, webhook_disable_after=0.5, smtp_host=None)
    acme, _ = await people(store)
    endpoint_id = await endpoint(store, acme, receiver.url)
    receiver.down = True
    await owe(store, senders, acme, endpoint_id, "a", "b")

    async def audited() -> bool:
        return [record.entry.action for record in await store.audit_log(acme)] == ["webhook.disable"]

    await eventually(audited, timeout=10, what="the endpoint disabled and audited")
    assert not await enabled(store, acme, endpoint_id) and smtp.messages == []
