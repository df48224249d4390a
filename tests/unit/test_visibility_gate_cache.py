"""What the visibility gate keeps, and for how long (services/visibility/gate.py): a tenant's mode and
a device's shift for `SETTINGS_TTL_S`, a live device's alerts until that or an alert of its tenant.
Over a store that records what it is asked; the REST, Socket.IO and webhook tests use real stores."""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.visibility.gate import SETTINGS_TTL_S, VisiblePositions
from shared.store.alerts import Alert
from shared.store.device_settings import DeviceSettings
from shared.store.tenant_settings import LocationVisibility, TenantSettings

T0 = 1767225600


class RecordingStore:
    def __init__(self) -> None:
        self.mode: LocationVisibility = "always"
        self.alerts: list[Alert] = []
        self.asked: Counter[str] = Counter()

    async def tenant_settings(self, tenant_id: int) -> TenantSettings:
        self.asked["tenant_settings"] += 1
        return TenantSettings(location_visibility=self.mode)

    async def device_settings(self, device_id: int) -> DeviceSettings:
        self.asked["device_settings"] += 1
        return DeviceSettings(shift={"hours": [[0, 1]], "timezone": "UTC"})

    async def alerts_overlapping(self, device_ids: Any, *, start: Any = None, end: Any = None) -> list[Alert]:
        self.asked["alerts_overlapping"] += 1
        return list(self.alerts)

    async def positions(self, device_id: int, **kwargs: Any) -> list[Any]:
        return []


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def items(*times: int, tenant: int = 1, device: int = 7) -> list[tuple[int, int, int]]:
    return [(tenant, device, ts) for ts in times]


def key(item: tuple[int, int, int]) -> tuple[int, int, float]:
    return item


async def test_a_mode_is_read_once_per_tenant_until_it_is_stale() -> None:
    store, clock = RecordingStore(), Clock()
    gate = VisiblePositions(store, clock=clock)  # type: ignore[arg-type]  # the parts of ApiStore the gate reads
    noon = T0 + 12 * 3600
    for _ in range(100):
        assert await gate.live(items(noon) + items(noon, tenant=2, device=8), key) == [(1, 7, noon), (2, 8, noon)]
    assert store.asked == Counter({"tenant_settings": 2})

    store.mode = "on_shift"  # shift 00:00-01:00 UTC: noon is hidden, but not before the cached mode is stale
    clock.now += SETTINGS_TTL_S - 0.1
    assert await gate.live(items(noon), key) == [(1, 7, noon)]
    clock.now += 0.2
    assert await gate.live(items(noon, T0 + 1800), key) == [(1, 7, T0 + 1800)]
    before = store.asked.copy()
    for _ in range(50):
        await gate.live(items(noon + 1), key)
    assert store.asked == before  # shift and alerts kept as well


async def test_an_alert_of_the_tenant_makes_live_readers_look_again() -> None:
    store, clock = RecordingStore(), Clock()
    store.mode = "alerts_only"
    gate = VisiblePositions(store, clock=clock)  # type: ignore[arg-type]  # the parts of ApiStore the gate reads
    assert await gate.live(items(T0), key) == []
    store.alerts = [Alert(1, 1, 7, "356307042441013", "sos", T0, None, None, None, "open", T0)]
    assert await gate.live(items(T0 + 1), key) == []  # still the alerts read a moment ago
    gate.forget_alerts(2)  # another tenant's alert changes nothing here
    assert await gate.live(items(T0 + 1), key) == []
    gate.forget_alerts(1)
    assert await gate.live(items(T0 + 1), key) == [(1, 7, T0 + 1)]
