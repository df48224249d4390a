"""Devices (the insoles) and the downlink commands queued for them: the port's device half.

A device's live state (last seen, battery, last fix) is written by the
telemetry commit (telemetry.py) and read here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.store.audit import AuditEntry

MODEL_MAX_LENGTH = 80  # a device's `model`: a name like "Concox GT06N" or "Teltonika FMB920", not a document


class DeviceExists(Exception):
    """A device with that IMEI is already registered."""


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
    protocol: str = "xsole"  # the protocol it speaks (shared/protocols/tracker.py PROTOCOLS)
    model: str | None = None  # what it is, in the operator's words (free text)


@dataclass(frozen=True, slots=True)
class CommandRecord:
    id: int
    device_id: int
    imei: str
    cmd: int
    args: bytes
    status: str  # pending, sent, done, failed, unsupported; expired: pending past its expires_at
    seq: int | None
    created_at: float = 0.0
    sent_at: float | None = None
    completed_at: float | None = None
    expires_at: float | None = None  # never sent after this (None: no limit)


def command_status(command: CommandRecord, now: float) -> str:
    """The status a reader sees: a command still pending past its expiry is `expired` (and never sent)."""
    if command.status == "pending" and command.expires_at is not None and command.expires_at <= now:
        return "expired"
    return command.status


class DeviceStore(Protocol):
    async def add_device(
        self,
        *,
        tenant_id: int,
        imei: str,
        name: str,
        token_hash: bytes,
        protocol: str = "xsole",
        model: str | None = None,
        audit: AuditEntry | None = None,
    ) -> Device:
        """Register a device; DeviceExists when its IMEI is registered already (in any tenant).
        A device of a tracker protocol carries no secret: its `token_hash` is b"".
        A retired IMEI registers as a new device (a new id) that shares none of the old one's records."""

    async def set_device_token(self, *, imei: str, token_hash: bytes, audit: AuditEntry | None = None) -> bool:
        """Replace the device's secret; False when there is no such device."""

    async def update_device(
        self,
        device_id: int,
        *,
        name: str | None = None,
        enabled: bool | None = None,
        audit: AuditEntry | None = None,
    ) -> Device | None:
        """Rename, disable or enable (None leaves a field as it is); the device as it now stands, None if gone."""

    async def retire_device(self, device_id: int, *, erase: bool = False, audit: AuditEntry | None = None) -> bool:
        """The device is gone for good: no lookup finds it, its commands are never sent and its IMEI
        is free. `erase` also deletes everything stored about it (telemetry, alarms, alerts with their
        timelines and notifications, commands, settings); without it those stay, unreachable through
        the device. False when there was no such device."""

    async def device_by_imei(self, imei: str) -> Device | None: ...
    async def device(self, device_id: int) -> Device | None: ...
    async def devices_by_ids(self, device_ids: Sequence[int]) -> list[Device]:
        """The devices among these ids that still exist (retired ones are gone), in any order."""

    async def devices(self, tenant_id: int, *, after_id: int | None = None, limit: int = 100) -> list[Device]:
        """A tenant's devices by id; `after_id` is the cursor."""

    async def enqueue_command(
        self,
        *,
        device_id: int,
        cmd: int,
        args: bytes = b"",
        ttl_s: float | None = None,
        audit: AuditEntry | None = None,
    ) -> int:
        """Queue a command for the device (status `pending`); its id. Unsent after `ttl_s` seconds it
        expires: commands_to_send never returns it again."""

    async def device_commands(
        self, device_id: int, *, before_id: int | None = None, limit: int = 100
    ) -> list[CommandRecord]:
        """A device's commands newest first; `before_id` is the cursor."""

    async def commands_to_send(
        self,
        device_ids: Sequence[int] | None = None,
        *,
        include_unanswered: bool = False,
    ) -> list[CommandRecord]:
        """Commands never sent and not expired (and, with include_unanswered, sent but not yet answered),
        in queue order."""

    async def mark_command_sent(self, command_id: int, seq: int) -> bool:
        """The command goes out under `seq` (again, after a reconnection); an answered command stays
        answered. False when it may not go out: it expired (or its device is gone) meanwhile."""

    async def command(self, command_id: int) -> CommandRecord | None:
        """One command as it stands; None when there is none (or its device is gone)."""
