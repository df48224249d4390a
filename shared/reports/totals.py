"""A worker's figures over a span of device time, from the stored frames (CONTRACT §9). Pure.

- **distance_m**: `track.DistanceMeter` over the valid fixes (a standing worker's jitter
  adds nothing).
- **online_s**: time between consecutive frames the device sent live (not buffered) at
  most `gap_s` apart (SOLEWATCH_OFFLINE_AFTER, 600 s by default): a device silent for
  longer was offline, whatever it recorded meanwhile.
- **walking_s … off_foot_s**: each ACTIVITY's state holds until the next ACTIVITY, if that
  comes within `gap_s`; a state with no successor that soon is not counted.
- **steps**: the ACTIVITY frames' step counts (each counts the steps since the one before).

Every interval is cut at the span's edges, so the totals of consecutive spans add up to
the totals over their union (up to the distance meter starting afresh at each edge, see
`LOOK_S`). That is what lets reports sum stored hours (`hours.py`) and compute only the
edges of a range from frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from itertools import chain, pairwise
from typing import Protocol

from shared.protocols.xsole.constants import ActivityState
from shared.reports.track import TRACK_GAP_S, DistanceMeter, PositionRecord, fixes

# How far before and after a span its frames matter: the meter's anchor and the intervals that
# cross its edges. Frames further off change nothing in it (TRACK_GAP_S is the meter's own gap,
# and `gap_s` is capped to it below).
LOOK_S = TRACK_GAP_S

_STATE_FIELD: dict[int, str] = {
    ActivityState.STILL: "still_s",
    ActivityState.WALKING: "walking_s",
    ActivityState.RUNNING: "running_s",
    ActivityState.LYING: "lying_s",
    ActivityState.OFF_FOOT: "off_foot_s",
}


@dataclass(slots=True)
class Totals:
    distance_m: float = 0.0
    online_s: float = 0.0
    walking_s: float = 0.0
    running_s: float = 0.0
    still_s: float = 0.0
    lying_s: float = 0.0
    off_foot_s: float = 0.0
    steps: int = 0

    @classmethod
    def of(cls, values: Sequence[float]) -> Totals:
        """From `as_tuple`'s order (a stored row): steps, the one count, back to an integer."""
        distance_m, online_s, walking_s, running_s, still_s, lying_s, off_foot_s, steps = values
        return cls(distance_m, online_s, walking_s, running_s, still_s, lying_s, off_foot_s, int(steps))

    def add(self, other: Totals, sign: int = 1) -> None:
        for f in FIELDS:
            setattr(self, f, getattr(self, f) + sign * getattr(other, f))

    def as_tuple(self) -> tuple[float | int, ...]:
        return tuple(getattr(self, f) for f in FIELDS)


FIELDS = tuple(f.name for f in fields(Totals))


class ActivityRecord(Protocol):
    """What the reports read of a stored ACTIVITY (StoredActivity, or the store's ActivityRow)."""

    @property
    def ts(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def state(self) -> int: ...
    @property
    def buffered(self) -> bool: ...


class FrameTime(Protocol):
    """A stored frame's device time: all the reports read of a heartbeat."""

    @property
    def ts(self) -> int: ...


def totals(
    positions: Iterable[PositionRecord],
    activities: Sequence[ActivityRecord],
    heartbeats: Iterable[FrameTime],
    *,
    lo: int,
    hi: int,
    gap_s: float = TRACK_GAP_S,
) -> Totals:
    """The figures of device times [lo, hi), from frames oldest first covering at least
    [lo - LOOK_S, hi + LOOK_S] (more does no harm)."""
    gap_s = min(gap_s, LOOK_S)
    out = Totals()
    positions = list(positions)
    meter = DistanceMeter()
    for fix in fixes(positions):
        if fix.ts >= hi:
            break
        added = meter.add(fix)
        if fix.ts >= lo:
            out.distance_m += added
    # Loops written out: a month's report may run them over millions of frames.
    live = sorted(
        chain(
            (p.ts for p in positions if not p.buffered),
            (a.ts for a in activities if not a.buffered),
            (h.ts for h in heartbeats),
        )
    )
    online = 0.0
    for a, b in pairwise(live):
        if b > lo and a < hi and b - a <= gap_s:
            online += min(b, hi) - max(a, lo)
    out.online_s = online
    states = dict.fromkeys(_STATE_FIELD.values(), 0.0)
    for this, following in pairwise(activities):
        a, b = this.ts, following.ts
        if b > lo and a < hi and b - a <= gap_s:
            name = _STATE_FIELD.get(this.state)
            if name is not None:
                states[name] += min(b, hi) - max(a, lo)
    for name, seconds in states.items():
        setattr(out, name, seconds)
    out.steps = sum(a.steps for a in activities if lo <= a.ts < hi)
    return out
