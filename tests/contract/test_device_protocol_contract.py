"""The devices port for every adapter: a device's protocol and model (CONTRACT §10), and a tracker's
battery level that its packet did not give (BATTERY_UNKNOWN), which must never replace a known one.

Only port methods are used. Each test gets a fresh, empty store.
"""

from __future__ import annotations

import time

from shared.bus.topics import TOPIC_ALARM
from shared.protocols.tracker import BATTERY_UNKNOWN
from shared.protocols.xsole import Heartbeat
from shared.store import Store
from tests.contract.store_data import IMEI, OTHER_IMEI, TS, add_device, frame, outbox, position, sos
from tests.helpers.stored import commit_frames


async def test_a_device_is_xsole_without_a_model_unless_told(store: Store) -> None:
    device = await add_device(store)

    assert (device.protocol, device.model) == ("xsole", None)
    assert await store.device_by_imei(IMEI) == device


async def test_protocol_and_model_are_kept_and_read_back_by_every_lookup(store: Store) -> None:
    tenant_id = await store.ensure_tenant("acme")
    device = await store.add_device(
        tenant_id=tenant_id, imei="3520", name="Guard", token_hash=b"", protocol="h02", model="Sinotrack ST-901"
    )
    insole = await add_device(store, OTHER_IMEI)

    assert (device.protocol, device.model, device.token_hash) == ("h02", "Sinotrack ST-901", b"")
    assert await store.device_by_imei("3520") == device
    assert await store.device(device.id) == device
    assert await store.devices_by_ids([device.id, insole.id]) in ([device, insole], [insole, device])
    assert await store.devices(tenant_id) == [device, insole]
    # A change of name or state keeps them.
    renamed = await store.update_device(device.id, name="Gate guard", enabled=False)
    assert renamed is not None and (renamed.protocol, renamed.model, renamed.name) == (
        "h02",
        "Sinotrack ST-901",
        "Gate guard",
    )


async def test_a_level_not_reported_leaves_the_last_known_battery(store: Store) -> None:
    device = await add_device(store)
    now = time.time()
    await commit_frames(store, [frame(device, position(1, TS + 10, battery=64), now)])
    await commit_frames(
        store,
        [
            frame(device, position(2, TS + 20, battery=BATTERY_UNKNOWN), now + 1),
            frame(device, Heartbeat(3, TS + 30, BATTERY_UNKNOWN, 0), now + 2),
        ],
    )

    after = await store.device(device.id)
    assert after is not None
    assert after.battery == 64
    assert after.last_fix_ts == TS + 20  # the position itself counts; only its battery is unknown


async def test_a_device_never_reporting_its_level_has_no_battery(store: Store) -> None:
    device = await add_device(store)
    await commit_frames(store, [frame(device, position(1, TS + 10, battery=BATTERY_UNKNOWN))])

    after = await store.device(device.id)
    assert after is not None and after.battery is None


async def test_an_alarm_without_a_level_says_none_to_alerting(store: Store) -> None:
    device = await add_device(store)
    await commit_frames(store, [frame(device, sos(1, TS + 10)._replace(battery=BATTERY_UNKNOWN))])

    [message] = await outbox(store, TOPIC_ALARM)
    assert message["kind"] == "sos" and message["battery"] is None
