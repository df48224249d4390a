"""A worker's shift hours (device settings' `shift`, CONTRACT §4/§8): when `no_motion` counts and,
under the `on_shift` location visibility, when positions may be seen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class ShiftWindow:
    """Working hours in a timezone: `hours` is a list of (start, end) local hours,
    0 to 24, fractions allowed; an end before its start runs past midnight."""

    hours: tuple[tuple[float, float], ...]
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        for start, end in self.hours:
            if not (0 <= start <= 24 and 0 <= end <= 24):
                raise ValueError(f"shift hours are between 0 and 24, got ({start}, {end})")
        ZoneInfo(self.timezone)  # an unknown zone fails here, not at the first frame

    @classmethod
    def of(cls, hours: Sequence[Sequence[float]], timezone: str = "UTC") -> ShiftWindow:
        return cls(tuple((float(start), float(end)) for start, end in hours), timezone)

    def contains(self, ts: float) -> bool:
        local = datetime.fromtimestamp(ts, ZoneInfo(self.timezone))
        hour = local.hour + local.minute / 60 + local.second / 3600
        for start, end in self.hours:
            if start == end or (start <= hour < end if start < end else hour >= start or hour < end):
                return True
        return False
