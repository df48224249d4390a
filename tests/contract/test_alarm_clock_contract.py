"""Issue 12 item 7, for every store adapter: an ALARM from a device whose clock
is implausible raises an alert dated by the receive time, and the alert's
`raised` timeline line keeps the time the device sent."""

from __future__ import annotations

import pytest

from shared.bus.topics import TOPIC_ALARM
from shared.store import Store
from tests.contract.store_data import add_device, frame, outbox, sos
from tests.helpers.stored import commit_frames

NOW = 1796083200  # 2026-12-01T00:00:00Z, the receive time of every alarm here
FOUR_YEARS = 4 * 365 * 24 * 3600


@pytest.mark.parametrize(
    ("device_ts", "device_time"),
    [
        (0, "1970-01-01T00:00:00Z"),  # the RTC lost power
        (NOW - FOUR_YEARS, "2022-12-02T00:00:00Z"),  # years behind
        (NOW + 86400, "2026-12-02T00:00:00Z"),  # a day ahead
    ],
    ids=["ts 0", "years behind", "a day ahead"],
)
async def test_an_alarm_with_an_implausible_clock_is_dated_by_its_receipt(
    store: Store, device_ts: int, device_time: str
) -> None:
    device = await add_device(store)
    await commit_frames(store, [frame(device, sos(1, device_ts), received_at=NOW + 0.4)])
    [message] = await outbox(store, TOPIC_ALARM)

    alert, created = await store.raise_alert_from_alarm(message)

    assert created and alert.ts == NOW
    [raised] = await store.alert_timeline(device.tenant_id, alert.id)
    assert raised.detail == {
        "alarm_id": message["alarm_id"],
        "kind": "sos",
        "device_ts": device_time,
        "dated_by": "received_at",
    }


async def test_a_late_alarm_from_a_sane_clock_keeps_its_own_time(store: Store) -> None:
    # Buffered while offline for two days: it happened then, not when it arrived.
    device = await add_device(store)
    two_days_ago = NOW - 2 * 86400
    await commit_frames(store, [frame(device, sos(1, two_days_ago), received_at=float(NOW))])
    [message] = await outbox(store, TOPIC_ALARM)

    alert, _ = await store.raise_alert_from_alarm(message)

    assert alert.ts == two_days_ago
    [raised] = await store.alert_timeline(device.tenant_id, alert.id)
    assert "device_ts" not in raised.detail
