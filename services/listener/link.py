"""What a transport is to the listener: a device link, and why links close.

Every transport (the XSole TCP port, MQTT, the tracker protocols' TCP ports) gives
each device it carries one object that implements `DeviceLink`. The link
provides the transport's side (send bytes, stop and restart reading, close
with a reason, say who is at the other end); in return it is handed the
listener's `Ingest` step, which turns its session's events into stored
frames, ACKs and logins, and the `Registry`, which knows who is online where
(see docs/listener.md).
"""

from __future__ import annotations

import enum
from typing import Protocol

from services.listener.committer import AckSink
from shared.protocols.tracker import TrackerSession
from shared.protocols.xsole import DeviceSession, SessionEnd
from shared.store.batch import DeviceRef
from shared.store.port import Device

# What a link's protocol state is: XSole's session, or a tracker protocol's (shared/protocols/tracker.py).
# Both hand out the same events and build their own ACK bytes (`acks`); `protocol` names which it is.
Session = DeviceSession | TrackerSession


class CloseReason(enum.Enum):
    """Why the listener ended a device's connection (TCP) or session (MQTT).

    The value is the `reason` label of the close metrics and the `reason` of
    the log line, for every transport alike.
    """

    FRAME_BEFORE_LOGIN = "before_login"
    MALFORMED_LOGIN = "malformed_login"
    LOGIN_REFUSED = "login_refused"
    BAD_FRAMES = "bad_frames"
    BAD_LENGTH = "length"
    NO_LOGIN = "no_login"
    STORE_UNAVAILABLE = "store"
    IDLE = "idle"
    REPLACED = "replaced"
    REVOKED = "revoked"  # the device was disabled, re-keyed or retired: its login no longer stands
    DRAINING = "draining"

    @classmethod
    def of(cls, end: SessionEnd) -> CloseReason:
        """The reason for a session that closed itself."""
        return _OF_SESSION_END[end]


_OF_SESSION_END = {
    SessionEnd.FRAME_BEFORE_LOGIN: CloseReason.FRAME_BEFORE_LOGIN,
    SessionEnd.MALFORMED_LOGIN: CloseReason.MALFORMED_LOGIN,
    SessionEnd.LOGIN_REFUSED: CloseReason.LOGIN_REFUSED,
    SessionEnd.BAD_FRAMES: CloseReason.BAD_FRAMES,
    SessionEnd.BAD_FRAMING: CloseReason.BAD_LENGTH,
}


class DeviceLink(AckSink, Protocol):
    """One device as one transport carries it.

    What the link provides (the transport's side):

    - `send(data)`: frames to the device, in order;
    - `pause()` / `resume()`: stop and restart taking the device's frames
      (backpressure: the window of frames awaiting durability is full, the
      committer is full, or a LOGIN is being checked);
    - `close(reason)`: end the connection or session; the device must log in again;
    - `peer`: who is at the other end, for logs; `address`: the source address
      that login back-off counts failures of, None where there is none;
    - `login_imei`: the IMEI a LOGIN must carry on this link (an MQTT topic's),
      None where any will do;
    - the AckSink methods, for the committer.

    What it gets: `session` (its protocol state, which the ingest step drives),
    and the ingest step's bookkeeping, kept on the link: `device` once logged
    in, `device_ref` (id, tenant id, IMEI) for the committer, `unacked` (frames
    submitted, not yet answered) and `last_seen_wall` (when its last bytes came).
    """

    device: Device | None
    device_ref: DeviceRef
    unacked: int
    last_seen_wall: float

    @property
    def session(self) -> Session: ...
    @property
    def peer(self) -> str: ...
    @property
    def address(self) -> str | None: ...
    @property
    def login_imei(self) -> str | None: ...
    @property
    def closing(self) -> bool: ...

    def send(self, data: bytes) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def close(self, reason: CloseReason, detail: str | None = None) -> None:
        """End the link; `detail` says more for the log line (the session's own words)."""
        ...

    async def login_accepted(self, device: Device) -> bool:
        """Record the login where the transport keeps it, before its LOGIN_ACK goes out;
        False when that failed (then no LOGIN_ACK: the device logs in again)."""
        ...

    async def login_refused(self, reason: CloseReason, hold_s: float) -> None:
        """After a refused LOGIN's LOGIN_ACK: end the link, at once or after `hold_s` seconds
        (login back-off) during which the device's LOGINs get nowhere."""
        ...
