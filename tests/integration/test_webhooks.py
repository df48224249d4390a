"""Partner webhooks end to end (CONTRACT §7): alarms to alerts to signed POSTs at a local receiver,
through the notifications service, the SQLite store, the in-process bus and the outbox relay."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
import pytest

from services.notifications import acknowledge_alert, resolve_alert, webhooks
from services.notifications.webhooks_outbound import attempt, new_client, retry_delay
from shared.bus import Message
from shared.bus.topics import TOPIC_DEVICE_STATUS
from shared.store.escalation import EscalationStep
from shared.store.sqlite import SqliteStore
from tests.helpers.alerting import Alerting, eventually
from tests.helpers.fake_twilio import FakeTwilio
from tests.helpers.webhook_receiver import Receiver

SECRET = "whsec_test-secret"
FAST = {"webhook_poll_interval": 0.05, "webhook_first_retry_max": 0.2}


async def endpoint(app: Alerting, url: str, events: tuple[str, ...] = ("alert.raised",)) -> int:
    tenant = await app.store.ensure_tenant("acme")
    made = await app.store.add_webhook_endpoint(
        tenant_id=tenant, url=url, events=events, description=None, secret=SECRET
    )
    return made.id


async def deliveries(app: Alerting, endpoint_id: int) -> list[Any]:
    return await app.store.webhook_deliveries(await app.store.ensure_tenant("acme"), endpoint_id)


async def recorded(app: Alerting, endpoint_id: int, delivered: int) -> None:
    """Until the store shows that many deliveries delivered (attempts are recorded together, a moment
    after their answer)."""

    async def done() -> bool:
        return sum(d.status == "delivered" for d in await deliveries(app, endpoint_id)) >= delivered

    await eventually(done, what=f"{delivered} deliveries recorded as delivered")


async def test_each_alert_change_is_delivered_signed_with_its_id(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST)
    events = ("alert.raised", "alert.acknowledged", "alert.resolved")
    endpoint_id = await endpoint(app, receiver.url, events)
    device = await app.device()
    await app.alarm(device)
    await eventually(lambda: len(receiver.delivered()) == 1, what="alert.raised delivered")
    [alert] = await app.alerts()
    await acknowledge_alert(app.context, tenant_id=alert.tenant_id, alert_id=alert.id, by="Ana")
    await eventually(lambda: len(receiver.delivered()) == 2, what="alert.acknowledged delivered")
    await resolve_alert(app.context, tenant_id=alert.tenant_id, alert_id=alert.id, by="Ana")
    await eventually(lambda: len(receiver.delivered()) == 3, what="alert.resolved delivered")
    await recorded(app, endpoint_id, 3)

    got = receiver.delivered()
    assert [r.event["type"] for r in got] == list(events)
    for request in got:
        event = request.event
        assert request.signed_with(SECRET) and not request.signed_with("another secret")
        assert request.headers["Solewatch-Event-Id"] == event["id"] and str(event["id"]).startswith("evt_")
        assert request.headers["Content-Type"] == "application/json"
        assert set(event) == {"id", "type", "created_at", "data"}
        data = event["data"]
        assert isinstance(data, dict) and (data["id"], data["imei"], data["kind"]) == (alert.id, device.imei, "sos")
    assert [r.event["data"]["status"] for r in got] == ["open", "acknowledged", "resolved"]
    assert len({r.event["id"] for r in got}) == 3
    log = await deliveries(app, endpoint_id)
    assert [(d.type, d.status, d.attempts, d.last_status) for d in log] == [
        ("alert.resolved", "delivered", 1, 200),
        ("alert.acknowledged", "delivered", 1, 200),
        ("alert.raised", "delivered", 1, 200),
    ]


async def test_an_endpoint_hears_only_the_events_it_asked_for(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST)
    await endpoint(app, receiver.url, ("alert.resolved",))
    device = await app.device()
    await app.alarm(device)
    await app.settle()
    [alert] = await app.alerts()
    await resolve_alert(app.context, tenant_id=alert.tenant_id, alert_id=alert.id, by="Ana")
    await eventually(lambda: receiver.delivered(), what="alert.resolved delivered")
    await asyncio.sleep(0.2)
    assert [r.event["type"] for r in receiver.received] == ["alert.resolved"]


async def test_an_escalation_step_is_delivered_once(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, escalation_check_interval=3600.0, **FAST)
    endpoint_id = await endpoint(app, receiver.url, ("alert.escalated",))
    device = await app.device()
    ana, bob = await app.contact(device, "Ana", None, phone="+15550001"), await app.contact(device, "Bob", None)
    await app.store.set_escalation_policy(
        device.tenant_id, [EscalationStep((ana.id,), 120.0), EscalationStep((bob.id,), 300.0)]
    )
    await app.alarm(device)
    await app.settle()
    [alert] = await app.alerts()
    escalator = app.service.escalator
    assert await escalator.escalate_due(time.time() + 121) == 1
    # Two processes looking at once, or the same step looked at again: still one event.
    await asyncio.gather(escalator.escalate_due(time.time() + 121), escalator.escalate_due(time.time() + 121))
    await eventually(lambda: receiver.delivered(), what="alert.escalated delivered")
    await asyncio.sleep(0.3)
    [request] = receiver.received
    assert request.signed_with(SECRET) and request.event["type"] == "alert.escalated"
    data = request.event["data"]
    assert (data["id"], data["status"], data["escalation_step"]) == (alert.id, "open", 2)
    assert [d.type for d in await deliveries(app, endpoint_id)] == ["alert.escalated"]


async def test_a_device_status_message_heard_twice_is_delivered_once(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST)
    endpoint_id = await endpoint(app, receiver.url, ("device.online", "device.offline"))
    device = await app.device()
    status = {"tenant_id": device.tenant_id, "imei": device.imei, "online": False, "battery": 40, "last_seen": None}
    # The bus redelivers the same message (a consumer restarted before acknowledging it), twice at once.
    message = Message(TOPIC_DEVICE_STATUS, orjson.dumps(status), "status-7-1")
    await asyncio.gather(
        app.service.webhook_events.on_device_status(message), app.service.webhook_events.on_device_status(message)
    )
    await eventually(lambda: receiver.delivered(), what="device.offline delivered")
    await asyncio.sleep(0.3)
    [request] = receiver.received
    assert request.signed_with(SECRET) and request.event["type"] == "device.offline"
    assert request.event["data"] == {"imei": device.imei, "online": False, "battery": 40, "last_seen": None}
    assert len(await deliveries(app, endpoint_id)) == 1


async def test_a_receiver_down_for_a_while_gets_every_event_once_back(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST)
    endpoint_id = await endpoint(app, receiver.url)
    receiver.down = True
    for imei in ("356307042441013", "356307042441021", "356307042441039"):
        await app.alarm(await app.device(imei=imei))
    await eventually(lambda: len(receiver.received) >= 6, what="retries while the receiver is down")
    assert not receiver.delivered()
    pending = await deliveries(app, endpoint_id)
    assert {d.status for d in pending} == {"pending"} and all(d.last_status == 503 for d in pending)
    receiver.down = False
    await eventually(lambda: len({r.event["id"] for r in receiver.delivered()}) == 3, what="all delivered once up")
    await asyncio.sleep(0.3)
    log = await deliveries(app, endpoint_id)
    assert {d.event_id for d in log} == {r.event["id"] for r in receiver.delivered()}
    assert all(d.status == "delivered" and d.attempts >= 2 for d in log)
    # Delivered once each: nothing delivered is sent again.
    assert len(receiver.delivered()) == 3
    # And every attempt of one event carried the same id and the same body.
    for event_id in {d.event_id for d in log}:
        bodies = {r.body for r in receiver.received if r.headers["Solewatch-Event-Id"] == event_id}
        assert len(bodies) == 1


async def test_a_delivery_failing_past_the_retry_window_is_failed(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST, webhook_retry_window=0.5)
    endpoint_id = await endpoint(app, receiver.url)
    receiver.down = True
    await app.alarm(await app.device())

    async def failed() -> bool:
        return [d.status for d in await deliveries(app, endpoint_id)] == ["failed"]

    await eventually(failed, what="the delivery failed")
    [delivery] = await deliveries(app, endpoint_id)
    assert delivery.attempts >= 2 and delivery.next_attempt_at is None and delivery.last_status == 503
    tries = len(receiver.received)
    await asyncio.sleep(0.4)
    assert len(receiver.received) == tries  # given up on: no more attempts


async def test_a_hung_receiver_never_delays_an_sos_sms_or_email(smtp, start_alerting, receiver: Receiver) -> None:
    async with FakeTwilio(account_sid="AC" + "1234abcd" * 4, auth_token="webhooks-test-token") as twilio:
        app = await start_alerting(
            smtp,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            sms_from="+15550000000",
            twilio_base_url=twilio.url,
            **FAST,
        )
        receiver.hang = 30.0
        for n in range(5):  # several hung endpoints, and a backlog beyond their slots
            await endpoint(app, f"{receiver.url}/{n}")
        device = await app.device()
        await app.contact(device, "Ana", "ana@acme.test", phone="+33612345678")
        await app.alarm(device, seq=1, kind=1)  # its webhooks hang at every endpoint ...
        await eventually(lambda: len(receiver.received) >= 5, what="the first alert's webhooks hanging")
        for seq in (2, 3, 4):  # ... while these alarms come, and their own webhooks hang too
            await app.alarm(device, seq=seq, kind=seq)
        await eventually(lambda: len(smtp.messages) == 4 and len(twilio.accepted) == 4, what="every alert told")
        await app.service.dispatcher.idle()  # the sends are recorded
        assert len(receiver.received) >= 5 and not receiver.released.is_set()  # still hanging
        for alert in await app.alerts():
            records = await app.store.notifications_of(alert.tenant_id, alert.id)
            assert sorted(r.channel for r in records) == ["email", "sms"]
            for record in records:
                assert record.status == "sent"
                assert record.updated_at - alert.created_at < 1.5, f"the {record.channel} waited for the webhooks"


async def test_a_redirect_is_not_followed(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST)
    receiver.redirect_to = "/elsewhere"
    endpoint_id = await endpoint(app, receiver.url)
    await app.alarm(await app.device())

    async def tried() -> bool:
        return [d.last_status for d in await deliveries(app, endpoint_id)] == [302]

    await eventually(tried, what="an attempt answered 302")
    [delivery] = await deliveries(app, endpoint_id)
    assert delivery.status == "pending" and "redirect" in (delivery.last_error or "")
    assert {r.path for r in receiver.received} == {"/hooks"}


async def test_a_manual_retry_sends_a_delivered_event_again(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST)
    endpoint_id = await endpoint(app, receiver.url)
    await app.alarm(await app.device())
    await recorded(app, endpoint_id, 1)
    [delivery] = await deliveries(app, endpoint_id)
    tenant = await app.store.ensure_tenant("acme")
    assert await app.store.retry_webhook_delivery(tenant, endpoint_id, delivery.event_id, now=time.time())
    await eventually(lambda: len(receiver.delivered()) == 2, what="sent again")
    await eventually(lambda: _attempts(app, endpoint_id, 2), what="the second attempt recorded")
    first, second = receiver.delivered()
    assert first.body == second.body and second.headers["Solewatch-Event-Id"] == delivery.event_id
    [again] = await deliveries(app, endpoint_id)
    assert (again.status, again.attempts) == ("delivered", 2)


# -- where production posts, and where it does not ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hooks",  # plain http
        "https://127.0.0.1:{port}/hooks",  # loopback
        "https://localhost:{port}/hooks",
        "https://10.1.2.3:{port}/hooks",  # private
        "https://[::1]:{port}/hooks",
        "https://169.254.169.254:{port}/latest/meta-data",  # link-local: cloud metadata
    ],
)
async def test_production_never_posts_inside(url: str, receiver: Receiver) -> None:
    async with new_client() as client:
        result = await attempt(
            client,
            url=url.format(port=receiver.port),
            secret=SECRET,
            event_id="evt_" + "1" * 24,
            body=b"{}",
            now=int(time.time()),
            production=True,
        )
    assert not result.delivered and (result.error or "").startswith("refused")
    assert receiver.received == []


async def test_production_checks_what_a_name_resolves_to_when_it_connects(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A public-looking name that resolves, now, to loopback (DNS rebinding after registration).
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def rebound(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.partner.example":
            return await real("127.0.0.1", port, *args, **kwargs)
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", rebound)
    async with new_client() as client:
        result = await attempt(
            client,
            url=f"https://hooks.partner.example:{receiver.port}/hooks",
            secret=SECRET,
            event_id="evt_" + "2" * 24,
            body=b"{}",
            now=int(time.time()),
            production=True,
        )
    assert not result.delivered and "non-public" in (result.error or "")
    assert receiver.received == []


def test_the_retry_schedule_starts_within_30_s_at_most_doubles_and_caps_at_an_hour() -> None:
    for n in range(50):
        event_id = f"evt_{n:024x}"
        delays = [retry_delay(event_id, attempts) for attempts in range(1, 40)]
        assert 0 < delays[0] <= 30
        assert all(later <= 2 * earlier for earlier, later in itertools.pairwise(delays))
        assert max(delays) <= 3600
        assert sum(delays[:-1]) >= 24 * 3600  # enough attempts to span the 24 h window
    spread = {round(retry_delay(f"evt_{n:024x}", 1), 3) for n in range(50)}
    assert len(spread) > 40  # jitter: deliveries failing together do not retry together


async def test_a_queued_event_is_sent_byte_for_byte(start_alerting, receiver: Receiver) -> None:
    # A ping queued straight into the store is sent as stored, byte for byte.
    app = await start_alerting(None, **FAST)
    endpoint_id = await endpoint(app, receiver.url, ("ping",))
    tenant = await app.store.ensure_tenant("acme")
    body = orjson.dumps({"id": "evt_" + "3" * 24, "type": "ping", "created_at": "x", "data": {}})
    await app.store.queue_webhook_event(
        tenant_id=tenant, endpoint_ids=[endpoint_id], event_id="evt_" + "3" * 24, type="ping", payload=body, at=0
    )
    await eventually(lambda: receiver.delivered(), what="the ping delivered")
    assert receiver.delivered()[0].body == body


async def test_events_owed_when_the_process_stops_are_sent_after_the_next_start(
    start_alerting, receiver: Receiver
) -> None:
    app = await start_alerting(None, **FAST)
    endpoint_id = await endpoint(app, receiver.url)
    receiver.down = True
    await app.alarm(await app.device())
    await eventually(lambda: receiver.received, what="a first attempt")
    [owed] = await deliveries(app, endpoint_id)
    await app.stop()
    # As if the process had died mid-send (kill -9): its lease is left behind in the store.
    [held] = await _reopened_claim(app)
    assert held.event_id == owed.event_id
    receiver.down = False
    again = await start_alerting(None, **FAST)
    await recorded(again, endpoint_id, 1)
    [delivery] = await deliveries(again, endpoint_id)
    assert (delivery.event_id, delivery.status) == (owed.event_id, "delivered")
    assert [r.headers["Solewatch-Event-Id"] for r in receiver.delivered()] == [owed.event_id]


async def _attempts(app: Alerting, endpoint_id: int, attempts: int) -> bool:
    return [d.attempts for d in await deliveries(app, endpoint_id)] == [attempts]


async def _reopened_claim(app: Alerting) -> list[Any]:
    store = SqliteStore(app.settings.sqlite_path, synchronous="NORMAL")
    await store.open()
    try:
        return await store.claim_webhook_deliveries(owner="dead", now=time.time() + 1, lease_s=1.0, limit=10)
    finally:
        await store.close()


async def test_a_login_storm_nobody_listens_to_costs_one_read(
    start_alerting, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await start_alerting(None, **FAST)
    device = await app.device()
    reads = 0
    look = app.store.subscribed_webhook_endpoints

    async def counted(tenant_id: int, event_type: str) -> Any:
        nonlocal reads
        reads += 1
        return await look(tenant_id, event_type)

    monkeypatch.setattr(app.store, "subscribed_webhook_endpoints", counted)
    events = app.service.webhook_events
    status = {"tenant_id": device.tenant_id, "imei": device.imei, "online": True, "battery": 40, "last_seen": None}
    for n in range(200):
        await events.on_device_status(Message(TOPIC_DEVICE_STATUS, orjson.dumps(status), f"status-1-{n}"))
    assert reads == 1

    await endpoint(app, receiver.url, ("device.online",))
    await asyncio.sleep(webhooks.NOBODY_TTL_S)  # an endpoint subscribing is heard this much later at most
    await events.on_device_status(Message(TOPIC_DEVICE_STATUS, orjson.dumps(status), "status-1-late"))
    await eventually(lambda: receiver.delivered(), what="device.online delivered once someone listens")
