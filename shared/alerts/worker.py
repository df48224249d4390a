"""Whose alert it is, for the words of a notification."""

from __future__ import annotations

from typing import Protocol

from shared.store.alerts import Alert
from shared.store.devices import Device


class DeviceLookup(Protocol):
    async def device(self, device_id: int) -> Device | None: ...


async def worker_name(store: DeviceLookup, alert: Alert) -> str | None:
    """The name of the worker whose insole raised the alert, None once that insole is retired.

    Looked up by the alert's device id, never by its IMEI: a retired insole's IMEI
    may be registered again for someone else, whose name must not go on the old alerts.
    """
    device = await store.device(alert.device_id)
    return device.name if device is not None and device.tenant_id == alert.tenant_id else None
