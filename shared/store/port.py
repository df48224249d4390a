"""What solewatch needs from storage, whatever engine holds it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from shared.protocols.xsole import DeviceEvent, Position
from shared.store.accounts import AccountStore
from shared.store.alerts import AlertStore
from shared.store.batch import IngestBatch
from shared.store.detections import DetectionStore
from shared.store.device_settings import DeviceSettingsStore
from shared.store.escalation import EscalationStore
from shared.store.geofences import GeofenceStore
from shared.store.push import PushStore
from shared.store.sms_replies import SmsReplyStore


class DeviceExists(Exception):
    """A device with that IMEI is already registered."""


class StoreUnavailable(Exception):
    """The storage engine cannot be reached or refused the write; retry the whole call."""


def hash_device_token(token: bytes) -> bytes:
    # Device tokens are 128 random bits issued by us, so a plain SHA-256 resists
    # guessing as well as a slow password hash would, and keeps 1,000 devices
    # logging in at once cheap.
    return hashlib.sha256(token).digest()


def token_matches(token: bytes, token_hash: bytes) -> bool:
    return hmac.compare_digest(hash_device_token(token), token_hash)


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    tenant_id: int
    imei: str
    name: str
    token_hash: bytes
    enabled: bool
    created_at: float
    last_seen: float | None = None
    battery: int | None = None
    last_fix_ts: int | None = None
    last_lat_e7: int | None = None
    last_lon_e7: int | None = None


class FrameRecord(NamedTuple):
    """One accepted device frame on its way to durable storage (a NamedTuple: one per frame)."""

    device_id: int
    tenant_id: int
    imei: str
    event: DeviceEvent
    received_at: float


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class CommandRecord:
    id: int
    device_id: int
    imei: str
    cmd: int
    args: bytes
    status: str  # pending, sent, done, failed, unsupported
    seq: int | None


class Store(
    AccountStore,
    AlertStore,
    EscalationStore,
    DetectionStore,
    GeofenceStore,
    DeviceSettingsStore,
    PushStore,
    SmsReplyStore,
    Protocol,
):
    """Storage port. Every write is idempotent where a device may retransmit."""

    # Called on the event loop after each committed write, so the outbox relay
    # can move new entries at once instead of at its next poll.
    on_write: Callable[[], None] | None

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise StoreUnavailable when the engine cannot serve."""

    async def ensure_tenant(self, name: str) -> int: ...
    async def add_device(self, *, tenant_id: int, imei: str, name: str, token_hash: bytes) -> Device: ...
    async def set_device_token(self, *, imei: str, token_hash: bytes) -> None: ...
    async def device_by_imei(self, imei: str) -> Device | None: ...
    async def device(self, device_id: int) -> Device | None: ...
    async def devices(self, tenant_id: int, *, after_id: int | None = None, limit: int = 100) -> list[Device]:
        """A tenant's devices by id; `after_id` is the cursor."""

    async def commit_frames(self, records: Sequence[FrameRecord]) -> None:
        """`commit_telemetry` for frames as records."""

    async def commit_telemetry(self, batch: IngestBatch) -> None:
        """Store a batch of frames and their outbox messages durably.

        All or nothing on SQLite (one transaction). On MongoDB a failed call may
        have stored part of the batch, and calling again with the same records
        completes it without doubling anything: callers retry everything after a
        failure (devices retransmit unacknowledged frames), so both give the
        same result. A record already stored (same device, frame type, device timestamp and
        seq) is skipped, and an ALARM already stored adds no new outbox message.
        """

    async def positions(
        self,
        device_id: int,
        *,
        since: int | None = None,
        until: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 100,
    ) -> list[Position]:
        """A device's stored positions, oldest first; `after` is a (ts, seq) cursor."""

    async def count_stored(self, device_id: int) -> dict[str, int]:
        """How many frames of each kind are stored for the device."""

    async def outbox_pending(self, limit: int, *, after_id: int = 0) -> list[OutboxEntry]:
        """Outbox entries in commit order, from the first id above `after_id`."""

    async def outbox_remove(self, ids: Sequence[int]) -> None: ...

    async def enqueue_command(self, *, device_id: int, cmd: int, args: bytes = b"") -> int: ...
    async def commands_to_send(
        self,
        device_ids: Sequence[int] | None = None,
        *,
        include_unanswered: bool = False,
    ) -> list[CommandRecord]:
        """Commands never sent (and, with include_unanswered, sent but not yet answered)."""

    async def mark_command_sent(self, command_id: int, seq: int) -> None: ...
