"""Location visibility on the `positions` webhook event (CONTRACT §7, §8): positions the tenant's
mode hides are dropped before they are owed to any endpoint. The consumer over both storage
adapters, then once end to end to a partner's receiver (SQLite, as test_webhook_positions.py)."""

from __future__ import annotations

import time
from typing import Any

from services.notifications.webhooks_positions import WebhookPositions
from services.visibility.policy import ALERT_LEAD_S
from shared.bus import Message
from shared.bus.topics import TOPIC_TELEMETRY
from shared.store import Device, FrameRecord
from shared.store.batch import IngestBatch
from shared.store.messages import telemetry_message
from shared.store.tenant_settings import LocationVisibility, TenantSettings
from tests.helpers.alerting import Alerting, eventually
from tests.helpers.api import ApiHarness, position
from tests.helpers.webhook_receiver import Receiver
from tests.integration.test_webhook_positions import FAST, endpoint, items, on_path, send_positions


async def subscribed_worker(api: ApiHarness, mode: LocationVisibility) -> tuple[Device, int]:
    tenant = await api.tenant()
    await api.store.set_tenant_settings(tenant, TenantSettings(location_visibility=mode))
    made = await api.store.add_webhook_endpoint(
        tenant_id=tenant, url="https://partner.example/hooks", events=("positions",), description=None, secret="s"
    )
    return await api.device(tenant), made.id


def telemetry(*frames: tuple[Device, int, int]) -> Message:
    records = [FrameRecord(d.id, d.tenant_id, d.imei, position(seq, ts), time.time()) for d, seq, ts in frames]
    payload = telemetry_message(IngestBatch.from_events(records))
    assert payload is not None
    return Message(TOPIC_TELEMETRY, payload, f"telemetry-{time.time_ns()}")


def owed_times(pending: list[dict[str, Any]]) -> list[str]:
    return [item["ts"] for item in pending]


def iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def test_hidden_positions_are_owed_to_no_endpoint(harness: ApiHarness) -> None:
    api = harness
    consumer = WebhookPositions(api.store, api.context.positions)
    device, endpoint_id = await subscribed_worker(api, "alerts_only")
    other, other_endpoint = await subscribed_worker(api, "always")
    now = int(time.time())
    await consumer.handle(telemetry((device, 1, now - 3600), (other, 1, now - 3600)))
    assert await api.store.pending_positions(endpoint_id) == []
    assert owed_times(await api.store.pending_positions(other_endpoint)) == [iso(now - 3600)]

    await api.alert(device, ts=now)
    api.context.positions.forget_alerts(device.tenant_id)  # else seen at most SETTINGS_TTL_S later
    for seq, ts in ((2, now - ALERT_LEAD_S - 1), (3, now - ALERT_LEAD_S), (4, now + 5)):
        await consumer.handle(telemetry((device, seq, ts), (other, seq, ts)))
    assert owed_times(await api.store.pending_positions(endpoint_id)) == [iso(now - ALERT_LEAD_S), iso(now + 5)]
    assert len(await api.store.pending_positions(other_endpoint)) == 4  # `always`: unchanged


async def test_a_partner_receives_only_what_the_mode_shows(start_alerting: Any, receiver: Receiver) -> None:
    app: Alerting = await start_alerting(None, **FAST)
    await endpoint(app, receiver.url)
    device = await app.device()
    await app.store.set_tenant_settings(device.tenant_id, TenantSettings(location_visibility="alerts_only"))
    # send_positions stores 30 positions a second apart from an hour ago; an SOS raised 15 minutes
    # after the 16th shows the last 15
    raised = int(time.time()) - 3600 + 15 + ALERT_LEAD_S
    await app.store.raise_alert_from_alarm(
        {
            "alarm_id": 1,
            "tenant_id": device.tenant_id,
            "device_id": device.id,
            "imei": device.imei,
            "kind": "sos",
            "ts": raised,
            "lat": 43.6,
            "lon": 7.0,
            "battery": 80,
        }
    )
    await send_positions(app, device, 30)
    stored = await app.store.positions(device.id, limit=100)
    expected = [iso(p.ts) for p in stored if p.ts >= raised - ALERT_LEAD_S]
    assert len(stored) == 30 and 14 <= len(expected) <= 15  # (15 unless the clock ticked in between)
    await eventually(lambda: len(items(on_path(receiver, "/hooks"))) >= len(expected), timeout=10, what="positions")
    await app.settle()
    assert [item["ts"] for item in items(on_path(receiver, "/hooks"))] == expected
