"""Per-device detection settings (shared/store/device_settings.py), for every store adapter."""

from __future__ import annotations

from shared.store import Store
from shared.store.device_settings import DeviceSettings
from tests.contract.store_data import OTHER_IMEI, add_device


async def test_settings_default_to_none_and_are_replaced_whole(store: Store) -> None:
    device = await add_device(store)
    other = await add_device(store, OTHER_IMEI)
    assert await store.device_settings(device.id) == DeviceSettings()

    night = {"hours": [[22.0, 6.0]], "timezone": "Europe/Paris"}
    await store.set_device_settings(device.id, DeviceSettings(offline_after=300.0, shift=night))
    assert await store.device_settings(device.id) == DeviceSettings(300.0, night)
    assert await store.device_settings(other.id) == DeviceSettings()

    await store.set_device_settings(device.id, DeviceSettings(offline_after=None, shift=night))
    assert await store.device_settings(device.id) == DeviceSettings(None, night)
