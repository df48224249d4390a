"""Telemetry: frames committed as the listener accepts them, and the history read back.

The commit takes what the protocol decoded; what the store returns is its own
record (`StoredPosition`), not the wire's event type, so the API and exports
depend on storage, never on the codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from shared.protocols.xsole import DeviceEvent

if TYPE_CHECKING:
    from shared.store.batch import IngestBatch  # which builds on FrameRecord below


class FrameRecord(NamedTuple):
    """One accepted device frame on its way to durable storage (a NamedTuple: one per frame)."""

    device_id: int
    tenant_id: int
    imei: str
    event: DeviceEvent
    received_at: float


@dataclass(frozen=True, slots=True)
class StoredPosition:
    """A stored GPS position, in the integer units the device measured it in (exact;
    the API turns them into degrees and metres per second)."""

    ts: int  # device time, unix seconds
    seq: int  # the frame's sequence number: with ts, the position's key and the paging cursor
    lat_e7: int  # degrees x 1e7
    lon_e7: int
    alt_m: int
    speed_cms: int  # cm/s
    course_ddeg: int  # tenths of a degree, 0..3599
    sats: int
    hdop_d: int  # tenths
    battery: int  # %
    fix_valid: bool
    buffered: bool  # recorded while offline and sent late


@dataclass(frozen=True, slots=True)
class StoredActivity:
    """A stored ACTIVITY frame: what the worker was doing, as the insole judged it."""

    ts: int  # device time, unix seconds
    seq: int  # with ts, the key and the paging cursor, as for positions
    steps: int  # since the previous ACTIVITY
    state: int  # ActivityState: 0 unknown, 1 still, 2 walking, 3 running, 4 lying, 5 off-foot
    cadence: int  # steps/min
    battery: int  # %
    buffered: bool


@dataclass(frozen=True, slots=True)
class StoredHeartbeat:
    """A stored HEARTBEAT frame: the insole's battery and signal."""

    ts: int  # device time, unix seconds
    seq: int
    battery: int  # %
    rssi: int  # dBm


@runtime_checkable  # services/visibility/gate.py checks the store it is given can read positions
class PositionHistory(Protocol):
    """Where a worker was: read only through services/visibility (CONTRACT §8), never by a reader itself."""

    async def positions(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[StoredPosition]:
        """A device's stored positions, oldest first (by device time, then seq); `since` and
        `until` are inclusive, `after` is a (ts, seq) cursor. Each position once, however
        often its frame was committed."""


class FrameHistory(Protocol):
    """What a worker did and how the insole was: no locations."""

    async def activities(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[StoredActivity]:
        """A device's stored ACTIVITY frames, ordered and paged as `positions`."""

    async def heartbeats(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[StoredHeartbeat]:
        """A device's stored HEARTBEAT frames, ordered and paged as `positions`."""


class TelemetryHistory(PositionHistory, FrameHistory, Protocol):
    """Every frame stored, read back."""


class TelemetryStore(TelemetryHistory, Protocol):
    async def commit_telemetry(self, batch: IngestBatch) -> None:
        """Store a batch of frames and their outbox messages durably.

        All or nothing on SQLite (one transaction). On MongoDB a failed call may
        have stored part of the batch, and calling again with the same records
        completes it without doubling anything: callers retry everything after a
        failure (devices retransmit unacknowledged frames), so both give the
        same result. A record already stored (same device, frame type, device timestamp and
        seq) is skipped, and an ALARM already stored adds no new outbox message.
        Devices' last seen, battery and last fix move forward only.
        """
