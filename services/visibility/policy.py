"""Location visibility (CONTRACT §8) as pure functions: which device times of a worker may be seen.

- `always`: every time.
- `alerts_only`: from `ALERT_LEAD_S` (15 minutes) before an alert was raised until it was resolved;
  an open or acknowledged alert keeps its window open.
- `on_shift`: within the shift hours of the device's settings (in the shift's time zone, as
  `no_motion` counts them: `ShiftWindow`) and within the same alert windows. A device without
  shift hours is seen only during alerts: privacy by design, the admin says when a worker works.

Times are device times (unix seconds), as positions are stored and alerts raised (`Alert.ts`);
resolution is the server's time. Nothing here reads a clock or a store: services/visibility/gate.py
gathers the mode, the shift and the alerts and applies this.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.shift import ShiftWindow
from shared.store.alerts import Alert
from shared.store.tenant_settings import LocationVisibility

ALERT_LEAD_S = 15 * 60  # an alert shows where the worker was this long before it was raised


@dataclass(frozen=True, slots=True)
class Span:
    """Device times from `start` to `end`, both included."""

    start: float
    end: float


def alert_spans(alerts: Iterable[Alert]) -> tuple[Span, ...]:
    """The times the alerts let be seen, merged where they overlap or touch, in order."""
    spans = sorted((Span(alert.ts - ALERT_LEAD_S, _resolved(alert)) for alert in alerts), key=_start)
    merged: list[Span] = []
    for span in spans:
        if span.end < span.start:
            continue  # resolved before it was raised, by a device clock far ahead: nothing to show
        if merged and span.start <= merged[-1].end:
            merged[-1] = Span(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return tuple(merged)


def _resolved(alert: Alert) -> float:
    return math.inf if alert.resolved_at is None else alert.resolved_at  # open or acknowledged: still going


def shift_window(shift: Mapping[str, Any] | None) -> ShiftWindow | None:
    """The device settings' `shift` as detection reads it; None when there is none (or it cannot be read,
    which under `on_shift` hides rather than shows)."""
    if not shift:
        return None
    try:
        return ShiftWindow.of(shift["hours"], shift.get("timezone", "UTC"))
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class DeviceVisibility:
    """What one device shows, for the device times its alerts were gathered for."""

    mode: LocationVisibility
    shift: ShiftWindow | None = None
    alerts: tuple[Span, ...] = ()

    @property
    def shows_everything(self) -> bool:
        return self.mode == "always"

    def shows(self, ts: float) -> bool:
        """Whether the device's position at device time `ts` may be seen."""
        if self.mode == "always":
            return True
        if self.in_alert(ts):
            return True
        return self.mode == "on_shift" and self.shift is not None and self.shift.contains(ts)

    def in_alert(self, ts: float) -> bool:
        i = bisect.bisect_right(self.alerts, ts, key=_start) - 1
        return i >= 0 and ts <= self.alerts[i].end


def _start(span: Span) -> float:
    return span.start


ALWAYS = DeviceVisibility("always")
