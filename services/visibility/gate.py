"""The one way to a worker's positions (CONTRACT §8): every reader gets them through `VisiblePositions`.

The ServiceContext builds one (`context.positions`) and its `store` does not offer positions
(`ApiStore` has no `PositionHistory`), so the REST API, Socket.IO and the webhooks cannot read
them but through here; tests/unit/test_visibility_gate_reach.py checks that nobody reaches round
it (no `.positions(` and no `last_lat_e7` in those services). Alerts keep their own location and
detection reads the frames from the bus: neither comes through here.

What it costs: the tenant's mode and each device's shift change rarely and are kept `SETTINGS_TTL_S`
per process, so under `always` (the default) a reader pays one dictionary lookup per tenant. Under
the other modes a page of positions costs one alert query for its whole range, a list of devices one
alert query for all of them, and a live device's alerts are kept `SETTINGS_TTL_S` too (Socket.IO
drops them as soon as it hears of an alert of that device).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from services.visibility.policy import ALERT_LEAD_S, ALWAYS, DeviceVisibility, Span, alert_spans, shift_window
from shared.alerts import iso_utc
from shared.shift import ShiftWindow
from shared.store import ApiStore, Device
from shared.store.alerts import Alert
from shared.store.telemetry import PositionHistory, StoredPosition
from shared.store.tenant_settings import LocationVisibility

SETTINGS_TTL_S = 5.0  # a changed mode or shift, or a new alert, shows in what live readers send this much later
MAX_READS = 5  # store reads for one page: past long hidden stretches a page ends early, with its cursor

T = TypeVar("T")
Cursor = tuple[int, int]


@dataclass(frozen=True, slots=True)
class VisiblePage:
    """Positions that may be seen, oldest first, and where the next page starts (None: nothing further)."""

    items: list[StoredPosition]
    next_after: Cursor | None


def _key(row: StoredPosition) -> Cursor:
    return row.ts, row.seq


class VisiblePositions:
    def __init__(self, store: ApiStore, *, ttl: float = SETTINGS_TTL_S, clock: Callable[[], float] = time.monotonic):
        if not isinstance(store, PositionHistory):
            raise TypeError("the store given to VisiblePositions cannot read positions")
        self._read = store.positions  # the only reference to the raw reader outside the storage adapters
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._modes: dict[int, tuple[float, LocationVisibility]] = {}
        self._shifts: dict[int, tuple[float, ShiftWindow | None]] = {}
        # device id: its tenant, when its alerts were read, since which device time, their spans
        self._live_alerts: dict[int, tuple[int, float, float, tuple[Span, ...]]] = {}

    # -- what is cached ------------------------------------------------------------------------

    async def mode(self, tenant_id: int) -> LocationVisibility:
        now = self._clock()
        cached = self._modes.get(tenant_id)
        if cached is None or now - cached[0] >= self._ttl:
            cached = self._modes[tenant_id] = (now, (await self._store.tenant_settings(tenant_id)).location_visibility)
        return cached[1]

    async def _shift(self, device_id: int) -> ShiftWindow | None:
        now = self._clock()
        cached = self._shifts.get(device_id)
        if cached is None or now - cached[0] >= self._ttl:
            cached = self._shifts[device_id] = (now, shift_window((await self._store.device_settings(device_id)).shift))
        return cached[1]

    def forget_alerts(self, tenant_id: int) -> None:
        """An alert of the tenant was raised or changed: live readers ask the store again for its devices."""
        for device_id in [d for d, cached in self._live_alerts.items() if cached[0] == tenant_id]:
            del self._live_alerts[device_id]

    # -- readers -------------------------------------------------------------------------------

    async def page(
        self, device: Device, *, since: int | None, until: int | None, after: Cursor | None, limit: int
    ) -> VisiblePage:
        """A page of the device's positions as `PositionHistory.positions` reads them, less the hidden ones.
        A page may hold fewer than `limit` (even none) and still have a next one: follow it to the end."""
        mode = await self.mode(device.tenant_id)
        items: list[StoredPosition] = []
        for _ in range(1 if mode == "always" else MAX_READS):
            rows = await self._read(device.id, since=since, until=until, after=after, limit=limit + 1)
            more = len(rows) > limit  # the one row past the page says whether there is a next
            rows = rows[:limit]
            seen = await self._device(device.id, mode, start=rows[0].ts, end=rows[-1].ts) if rows else ALWAYS
            for i, row in enumerate(rows):
                if seen.shows(row.ts):
                    items.append(row)
                    if len(items) == limit:
                        return VisiblePage(items, _key(row) if more or i < len(rows) - 1 else None)
            if not more:
                return VisiblePage(items, None)
            after = _key(rows[-1])
        return VisiblePage(items, after)  # hidden rows all along: the next page goes on from there

    async def last_positions(self, devices: Sequence[Device], *, whole: bool = False) -> list[dict[str, Any] | None]:
        """Each device's `last_position` as the API shows it (`{"ts","lat","lon"}`), None when it has no fix
        or the fix may not be seen. One alert query for all the devices whose tenant does not show all.
        `whole`: every fix, for the admin's export of a worker's data only (CONTRACT §8)."""
        fixes = [_last_fix(device) for device in devices]
        if whole:
            return fixes
        hidden = [d for d, fix in zip(devices, fixes, strict=True) if fix and await self.mode(d.tenant_id) != "always"]
        if not hidden:
            return fixes
        times = [device.last_fix_ts or 0 for device in hidden]
        alerts = await self._store.alerts_overlapping(
            [device.id for device in hidden], start=min(times), end=max(times) + ALERT_LEAD_S
        )
        shown: dict[int, bool] = {}
        for device in hidden:
            mode = await self.mode(device.tenant_id)
            shift = await self._shift(device.id) if mode == "on_shift" else None
            mine = alert_spans(alert for alert in alerts if alert.device_id == device.id)
            shown[device.id] = DeviceVisibility(mode, shift, mine).shows(device.last_fix_ts or 0)
        return [fix if shown.get(d.id, True) else None for d, fix in zip(devices, fixes, strict=True)]

    async def live(self, items: Sequence[T], key: Callable[[T], tuple[int, int, float]]) -> list[T]:
        """The items of a live message (Socket.IO, webhooks) whose position may be seen now;
        `key` gives an item's tenant id, device id and device time."""
        keys = [key(item) for item in items]
        modes = {tenant_id: await self.mode(tenant_id) for tenant_id in {k[0] for k in keys}}
        if all(mode == "always" for mode in modes.values()):
            return list(items)  # the default: nothing more to look up
        earliest: dict[tuple[int, int], float] = {}  # (tenant id, device id): its oldest position here
        for tenant_id, device_id, ts in keys:
            if modes[tenant_id] != "always":
                earliest[tenant_id, device_id] = min(ts, earliest.get((tenant_id, device_id), ts))
        seen = {
            device_id: await self._live_device(tenant_id, device_id, modes[tenant_id], since=since)
            for (tenant_id, device_id), since in earliest.items()
        }
        shown = zip(items, keys, strict=True)
        return [item for item, (_, device_id, ts) in shown if seen.get(device_id, ALWAYS).shows(ts)]

    async def everything(self, device_id: int, *, after: Cursor | None, limit: int) -> list[StoredPosition]:
        """Every stored position, hidden or not: only for the admin's export of a worker's own data
        (GET /devices/{imei}/export; CONTRACT §8 filters exports to non-admins, not this one)."""
        return await self._read(device_id, after=after, limit=limit)

    # -- gathering one device's policy ---------------------------------------------------------

    async def _device(self, device_id: int, mode: LocationVisibility, *, start: float, end: float) -> DeviceVisibility:
        if mode == "always":
            return ALWAYS
        shift = await self._shift(device_id) if mode == "on_shift" else None
        alerts = await self._store.alerts_overlapping([device_id], start=start, end=end + ALERT_LEAD_S)
        return DeviceVisibility(mode, shift, alert_spans(alerts))

    async def _live_device(
        self, tenant_id: int, device_id: int, mode: LocationVisibility, *, since: float
    ) -> DeviceVisibility:
        now = self._clock()
        cached = self._live_alerts.get(device_id)
        if cached is None or now - cached[1] >= self._ttl or since < cached[2]:
            alerts: list[Alert] = await self._store.alerts_overlapping([device_id], start=since)
            cached = self._live_alerts[device_id] = (tenant_id, now, since, alert_spans(alerts))
        shift = await self._shift(device_id) if mode == "on_shift" else None
        return DeviceVisibility(mode, shift, cached[3])


def _last_fix(device: Device) -> dict[str, Any] | None:
    if device.last_fix_ts is None or device.last_lat_e7 is None or device.last_lon_e7 is None:
        return None
    return {"ts": iso_utc(device.last_fix_ts), "lat": device.last_lat_e7 / 1e7, "lon": device.last_lon_e7 / 1e7}
