"""A manual retry starts the backoff schedule again (CONTRACT §7): after hours of failures, an event
retried by hand that fails again is next tried within 30 s, not an hour later; `attempts` in the
delivery log still counts every attempt. Over each store adapter (tests/helpers/webhook_senders.py)."""

from __future__ import annotations

import time

from shared.store.webhooks import AttemptOutcome
from tests.helpers.alerting import eventually
from tests.helpers.webhook_receiver import Receiver
from tests.helpers.webhook_senders import Senders, owe, start_senders_fixture  # noqa: F401

HOURS_OF_FAILURES = 12  # attempts: the schedule's wait is at its one-hour cap by then


async def test_a_manual_retry_that_fails_is_next_tried_within_30_s(start_senders: Senders, receiver: Receiver) -> None:
    store, senders = await start_senders(1, webhook_first_retry_max=30.0)
    acme = await store.ensure_tenant("acme")
    endpoint = await store.add_webhook_endpoint(
        tenant_id=acme, url=receiver.url, events=("ping",), description=None, secret="whsec_test"
    )
    receiver.down = True
    await owe(store, senders, acme, endpoint.id, "a")

    async def attempts() -> int:
        [delivery] = await store.webhook_deliveries(acme, endpoint.id)
        return int(delivery.attempts)

    await eventually(lambda: attempts(), what="a first attempt")
    [delivery] = await store.webhook_deliveries(acme, endpoint.id)
    assert 0 < delivery.next_attempt_at - time.time() <= 30
    # The failures of the hours since, as a sender records them (claimed as if each were due).
    for _ in range(HOURS_OF_FAILURES):
        [held] = await store.claim_webhook_deliveries(owner="past", now=time.time() + 1e6, lease_s=1, limit=1)
        outcome = AttemptOutcome("pending", 503, "HTTP 503: down", time.time() + 3600, None, time.time())
        assert await store.finish_webhook_attempt(held.id, owner="past", outcome=outcome)
    [before] = await store.webhook_deliveries(acme, endpoint.id)
    assert before.attempts == HOURS_OF_FAILURES + 1

    retried_at = time.time()
    assert await store.retry_webhook_delivery(acme, endpoint.id, before.event_id, now=retried_at)
    senders[0].wake.set()

    async def tried_again() -> bool:
        return await attempts() == HOURS_OF_FAILURES + 2

    await eventually(tried_again, what="the retried event tried again")
    [after] = await store.webhook_deliveries(acme, endpoint.id)
    assert (after.status, after.last_status) == ("pending", 503)
    assert 0 < after.next_attempt_at - retried_at <= 31, "the schedule after a manual retry starts again"
