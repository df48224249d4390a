"""The `positions` webhook event end to end (CONTRACT §7): an insole's positions, committed as the
listener commits them, reach an endpoint subscribed to `positions` as signed batches in the REST
API's shape, at most one delivery a second, through the notifications service, the SQLite store,
the in-process bus and the outbox relay."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from shared.bus import Message
from shared.bus.topics import TOPIC_TELEMETRY
from shared.position_view import position_view
from shared.protocols.xsole import Position
from shared.protocols.xsole.constants import FLAG_BUFFERED, FLAG_FIX_VALID
from shared.store import Device, FrameRecord
from tests.helpers.alerting import Alerting, eventually
from tests.helpers.stored import commit_frames
from tests.helpers.webhook_receiver import Received, Receiver

SECRET = "whsec_positions"
FAST = {"webhook_poll_interval": 0.05, "webhook_first_retry_max": 0.2}
REST_KEYS = {"ts", "lat", "lon", "alt", "speed", "course", "sats", "hdop", "battery", "buffered"}


async def endpoint(app: Alerting, url: str, events: tuple[str, ...] = ("positions",)) -> int:
    tenant = await app.store.ensure_tenant("acme")
    made = await app.store.add_webhook_endpoint(
        tenant_id=tenant, url=url, events=events, description=None, secret=SECRET
    )
    return made.id


async def send_positions(app: Alerting, device: Device, count: int, *, every: float = 0.0, first: int = 0) -> None:
    """The listener's part: each POSITION frame committed on its own (one frame in flight), with its
    outbox message."""
    start = int(time.time()) - 3600
    for n in range(first, first + count):
        event = Position(
            seq=n + 1,
            ts=start + n,
            lat_e7=436163000 + n * 100,
            lon_e7=70553000 - n * 100,
            alt_m=12 + n,
            speed_cms=140,
            course_ddeg=2705,
            sats=9,
            hdop_d=8,
            battery=87,
            flags=FLAG_FIX_VALID | (FLAG_BUFFERED if n % 2 else 0),
        )
        await commit_frames(app.store, [FrameRecord(device.id, device.tenant_id, device.imei, event, time.time())])
        app.relay.notify()
        if every:
            await asyncio.sleep(every)


def items(requests: list[Received]) -> list[dict[str, Any]]:
    """The items of the distinct events among `requests` (deduplicated by event id, as a partner does)."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for request in requests:
        if request.event["id"] not in seen:
            seen.add(request.event["id"])
            out += request.event["data"]["items"]
    return out


def on_path(receiver: Receiver, path: str) -> list[Received]:
    return [r for r in receiver.delivered() if r.path == path]


async def test_positions_arrive_signed_in_batches_in_the_rest_shape_a_second_apart(
    start_alerting, receiver: Receiver
) -> None:
    app = await start_alerting(None, **FAST)
    await endpoint(app, receiver.url)
    await endpoint(app, receiver.url.replace("/hooks", "/alerts-only"), ("alert.raised", "alert.resolved"))
    device = await app.device()
    await send_positions(app, device, 40, every=0.06)  # about 2.5 s of positions
    await eventually(lambda: len(items(on_path(receiver, "/hooks"))) >= 40, timeout=10, what="every position sent")
    await asyncio.sleep(1.2)

    got = on_path(receiver, "/hooks")
    assert len(got) >= 2, "2.5 s of positions came in one batch: the test proves nothing about batching"
    for request in got:
        event = request.event
        assert request.signed_with(SECRET) and not request.signed_with("another secret")
        assert request.headers["Solewatch-Event-Id"] == event["id"] and str(event["id"]).startswith("evt_")
        assert set(event) == {"id", "type", "created_at", "data"} and event["type"] == "positions"
        assert all(set(item) == REST_KEYS | {"imei"} and item["imei"] == device.imei for item in event["data"]["items"])
    arrivals = [r.at for r in receiver.received]  # every request to the receiver, retries included
    assert all(later - earlier >= 0.99 for earlier, later in itertools.pairwise(arrivals)), arrivals
    # Each position once, oldest first, exactly as the REST API gives it.
    stored = await app.store.positions(device.id, limit=1000)
    assert [{k: v for k, v in item.items() if k != "imei"} for item in items(got)] == [position_view(p) for p in stored]
    assert len(stored) == 40
    assert on_path(receiver, "/alerts-only") == []  # an endpoint that did not ask for positions gets none


async def test_a_redelivered_telemetry_message_adds_no_item(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST)
    await endpoint(app, receiver.url)
    device = await app.device()
    heard: list[Message] = []

    async def keep(message: Message) -> None:
        heard.append(message)

    app.context.bus.subscribe("catch", [TOPIC_TELEMETRY], keep)
    await send_positions(app, device, 3, every=0.05)
    await eventually(lambda: len(items(receiver.delivered())) == 3, what="three positions sent")
    # The bus hands every message again (a consumer restarted before acknowledging), twice at once.
    await asyncio.gather(*(app.service.webhook_positions.handle(m) for m in heard + heard))
    await send_positions(app, device, 1, first=3)
    await eventually(lambda: len(items(receiver.delivered())) >= 4, what="the next position sent")
    await asyncio.sleep(1.5)
    assert [item["ts"] for item in items(receiver.delivered())] == [
        position_view(p)["ts"] for p in await app.store.positions(device.id)
    ]


async def test_a_receiver_down_then_back_gets_every_position_once(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST)
    await endpoint(app, receiver.url)
    device = await app.device()
    receiver.down = True
    await send_positions(app, device, 10, every=0.05)
    await eventually(lambda: len(receiver.received) >= 3, what="attempts while the receiver is down")
    await send_positions(app, device, 10, every=0.05, first=10)
    receiver.down = False
    await eventually(lambda: len(items(receiver.delivered())) >= 20, timeout=10, what="every position once up")
    await asyncio.sleep(1.5)
    delivered = items(receiver.delivered())
    assert [item["ts"] for item in delivered] == [position_view(p)["ts"] for p in await app.store.positions(device.id)]
    assert len(delivered) == 20
    # Each event is one batch whatever the attempt: the same body under the same id.
    for event_id in {r.event["id"] for r in receiver.received}:
        assert len({r.body for r in receiver.received if r.event["id"] == event_id}) == 1
    # A new batch only once the previous was delivered, and a second after it.
    firsts: dict[str, float] = {}
    for request in receiver.received:
        firsts.setdefault(request.event["id"], request.at)
    starts = sorted(firsts.values())
    assert all(later - earlier >= 0.99 for earlier, later in itertools.pairwise(starts)), starts


async def test_pending_positions_outlive_a_restart(start_alerting, receiver: Receiver) -> None:
    app = await start_alerting(None, **FAST)
    endpoint_id = await endpoint(app, receiver.url)
    device = await app.device()
    await app.service.position_batcher.stop()  # the process stops before it batches them
    await send_positions(app, device, 5)

    async def all_pending() -> bool:
        return len(await app.store.pending_positions(endpoint_id)) == 5

    await eventually(all_pending, what="five positions pending")
    await app.stop()
    assert receiver.received == []

    again = await start_alerting(None, **FAST)
    await eventually(lambda: len(items(receiver.delivered())) == 5, what="the positions sent after the restart")
    assert [item["ts"] for item in items(receiver.delivered())] == [
        position_view(p)["ts"] for p in await again.store.positions(device.id)
    ]


async def test_with_no_endpoint_asking_a_message_costs_one_cached_lookup(start_alerting) -> None:
    app = await start_alerting(None, **FAST)
    await endpoint(app, "http://127.0.0.1:9/hooks", ("alert.raised",))
    reads = 0
    real = app.store.positions_subscribers

    async def counted() -> dict[int, list[int]]:
        nonlocal reads
        reads += 1
        return await real()

    app.store.positions_subscribers = counted  # type: ignore[method-assign]  # counting the store reads
    device = await app.device()
    message = Message(TOPIC_TELEMETRY, b"not even parsed", "outbox-1")
    for _ in range(200):
        await app.service.webhook_positions.handle(message)
    assert reads == 1
    await send_positions(app, device, 3)
    await app.settle()
    assert await app.store.pending_positions(1) == []
