"""Who is online where: this process's logged-in links, the cache's marks, status and commands.

Every transport's links log in and out through the one `Registry` of their
listener process. It keeps the device's online mark in the shared cache (so
the API and other processes know a listener holds it), announces
`device_status` on the bus, and delivers downlink commands to the link that
holds the device: at once when queued here or announced on the bus, from the
store's poll otherwise, and every command still unanswered right after a login.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from services.listener import metrics
from services.listener.link import CloseReason, DeviceLink
from shared.bus import Bus, Message
from shared.bus.topics import TOPIC_DEVICE_STATUS
from shared.cache import Cache
from shared.config import Settings
from shared.logging import get_logger
from shared.online import online_key
from shared.protocols.xsole import CommandResult
from shared.store.audit import AuditEntry
from shared.store.port import CommandRecord, Device

log = get_logger("solewatch.listener")

ONLINE_MARK_TTL_S = 90.0
COMMAND_UNSUPPORTED = 2  # a COMMAND_RESULT's status for a command the device cannot carry out (CONTRACT §4)
# How often the links held here are checked against the store (recheck_logins).
LOGIN_RECHECK_S = 30.0


class RegistryStore(Protocol):
    """What the registry needs of the store: downlink commands, and the devices as they stand now."""

    async def devices_by_ids(self, device_ids: Sequence[int]) -> list[Device]: ...

    async def enqueue_command(
        self,
        *,
        device_id: int,
        cmd: int,
        args: bytes = b"",
        ttl_s: float | None = None,
        audit: AuditEntry | None = None,
    ) -> int: ...
    async def commands_to_send(
        self, device_ids: Sequence[int] | None = None, *, include_unanswered: bool = False
    ) -> list[CommandRecord]: ...
    async def mark_command_sent(self, command_id: int, seq: int) -> bool: ...


def iso_utc(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def command_seq(command_id: int) -> int:
    """The COMMAND frame seq of a command: from its id, so it is the same on every
    resend and differs between a device's last 65,535 commands."""
    return command_id & 0xFFFF


class Registry:
    def __init__(
        self,
        *,
        store: RegistryStore,
        cache: Cache | None,
        bus: Bus | None,
        settings: Callable[[], Settings],
        spawn: Callable[[Coroutine[Any, Any, Any]], object],
        record_result: Callable[[DeviceLink, CommandResult], None] | None = None,
    ):
        """`record_result` stores a command's result as if its device had sent it (the committer's
        path for a device's COMMAND_RESULT): how a command its protocol cannot carry ends."""
        self._store = store
        self._record_result = record_result
        self._cache = cache
        self._bus = bus
        self._settings = settings
        self._spawn = spawn
        self._online: dict[str, DeviceLink] = {}  # imei -> the link its latest login came on
        self._commands_in_flight: set[int] = set()
        # What else must forget a revoked device's login: the MQTT bridge's sessions in the cache.
        self.on_revoked: list[Callable[[str], Awaitable[None]]] = []
        self.draining = False
        self.instance = f"{socket.gethostname()}:{os.getpid()}".encode()

    @property
    def online(self) -> Mapping[str, DeviceLink]:
        """IMEI -> the logged-in link that holds the device in this process (read only)."""
        return self._online

    # -- logins and logouts --------------------------------------------------------------

    def logged_in(self, link: DeviceLink) -> None:
        """`link` holds its device from now on: commands go to it, dashboards hear of it."""
        device = link.device
        assert device is not None
        previous = self._online.get(device.imei)
        if previous is not None and previous is not link:
            # The device logged in again (a reconnect, another transport) before its old link ended.
            previous.close(CloseReason.REPLACED)
        self._online[device.imei] = link
        self._spawn(self._send_pending_commands(link, include_unanswered=True))
        self._spawn(self._announce(link, online=True))

    def left(self, link: DeviceLink, *, announce: bool = True) -> None:
        """`link` no longer holds its device. `announce=False` when the device stays online
        elsewhere (an MQTT session another process holds): no offline mark, no status."""
        device = link.device
        if device is None or self._online.get(device.imei) is not link:
            return
        del self._online[device.imei]
        if announce and not self.draining:
            self._spawn(self._announce(link, online=False))

    def holds(self, link: DeviceLink) -> bool:
        device = link.device
        return device is not None and self._online.get(device.imei) is link

    async def revoke(self, imei: str) -> None:
        """The device was disabled, re-keyed or retired: its login no longer stands. Its link here
        closes; it must log in again, and the LOGIN is checked against the store as it now is."""
        link = self._online.get(imei)
        if link is not None:
            link.close(CloseReason.REVOKED)
        for forget in self.on_revoked:
            try:
                await forget(imei)
            except Exception as exc:
                log.warning("device_revoke_failed", imei=imei, error=str(exc))
        log.info("device_revoked", imei=imei, held_here=link is not None)

    async def on_device_revoked(self, message: Message) -> None:
        """A device revoked by another process (the API service)."""
        await self.revoke(orjson.loads(message.payload)["imei"])

    async def recheck_logins(self) -> None:
        """Every LOGIN_RECHECK_S, `recheck_logins_once`: the net under `device_revoked`, a
        broadcast that a listener misses while it reconnects to the bus (or that the API
        could not publish), which would leave a disabled or re-keyed insole connected."""
        while True:
            await asyncio.sleep(LOGIN_RECHECK_S)
            await self.recheck_logins_once()

    async def recheck_logins_once(self) -> list[str]:
        """Revoke each link held here whose device is gone, disabled or re-keyed since its
        login (one store query for all of them); the IMEIs revoked."""
        held = [(link, link.device) for link in self._online.values() if link.device is not None]
        if not held:
            return []
        try:
            current = {d.id: d for d in await self._store.devices_by_ids([seen.id for _, seen in held])}
        except Exception as exc:  # the next round tries again; LOGINs are checked against the store anyway
            log.warning("login_recheck_failed", error=str(exc))
            return []
        revoked = []
        for link, seen in held:
            now = current.get(seen.id)
            stale = now is None or not now.enabled or now.token_hash != seen.token_hash
            if stale and self._online.get(seen.imei) is link:
                log.warning("login_no_longer_stands", imei=seen.imei, retired=now is None)
                await self.revoke(seen.imei)
                revoked.append(seen.imei)
        return revoked

    async def _announce(self, link: DeviceLink, *, online: bool) -> None:
        """Mark the device online or offline in the cache and tell live dashboards."""
        device = link.device
        assert device is not None
        try:
            if self._cache is not None:
                if online:
                    await self._cache.set(online_key(device.id), self.instance, ttl=ONLINE_MARK_TTL_S)
                elif device.imei not in self._online:  # not already replaced by a newer login
                    await self._cache.delete(online_key(device.id))
            if self._bus is not None:
                # The battery as of login: the next frames' positions carry fresher ones.
                status = {
                    "tenant_id": device.tenant_id,
                    "imei": device.imei,
                    "online": online,
                    "battery": device.battery,
                    "last_seen": iso_utc(link.last_seen_wall),
                }
                await self._bus.publish(
                    TOPIC_DEVICE_STATUS, orjson.dumps(status), message_id=f"status-{device.id}-{time.time_ns()}"
                )
        except Exception as exc:  # live status is best effort; the frames are what must not be lost
            log.warning("device_status_failed", imei=device.imei, error=str(exc))

    async def keep_online_marks(self) -> None:
        """Renew the marks: they expire unless refreshed, so a crashed listener's devices
        do not stay "online" in a shared cache forever."""
        if self._cache is None:
            return
        while True:
            await asyncio.sleep(ONLINE_MARK_TTL_S / 3)
            for link in list(self._online.values()):
                if link.device is not None:
                    await self._cache.set(online_key(link.device.id), self.instance, ttl=ONLINE_MARK_TTL_S)

    async def release_online_marks(self) -> None:
        """At drain: this process's devices are about to go offline (or to another listener)."""
        self.draining = True
        if self._cache is None:
            return
        for link in list(self._online.values()):
            if link.device is not None:
                try:
                    await self._cache.delete(online_key(link.device.id))
                except Exception:
                    break

    # -- downlink commands -----------------------------------------------------------------

    def _links_of(self, device_id: int) -> list[DeviceLink]:
        return [link for link in self._online.values() if link.device is not None and link.device.id == device_id]

    async def queue_command(
        self, *, device_id: int, cmd: int, args: bytes = b"", audit: AuditEntry | None = None
    ) -> int:
        """Persist a command for a device and send it now if the device is online here."""
        command_id = await self._store.enqueue_command(
            device_id=device_id, cmd=cmd, args=args, ttl_s=self._settings().command_ttl, audit=audit
        )
        for link in self._links_of(device_id):
            await self._send_pending_commands(link)
        return command_id

    async def on_command_queued(self, message: Message) -> None:
        """A command queued by another process (the API, the notifications service)."""
        device_id = orjson.loads(message.payload)["device_id"]
        for link in self._links_of(device_id):
            await self._send_pending_commands(link)

    async def poll_commands(self) -> None:
        """Commands queued by another process (the CLI, the API service) reach us here."""
        while True:
            await asyncio.sleep(self._settings().command_poll_interval)
            if not self._online:
                continue
            try:
                pending = await self._store.commands_to_send()
            except Exception as exc:
                log.warning("command_poll_failed", error=str(exc))
                continue
            for command in pending:
                link = self._online.get(command.imei)
                if link is not None:
                    await self._send_command(link, command)

    async def _send_pending_commands(self, link: DeviceLink, *, include_unanswered: bool = False) -> None:
        device = link.device
        assert device is not None
        try:
            # After a login (include_unanswered), commands sent on an old link
            # but never answered go again, with the same seq.
            pending = await self._store.commands_to_send([device.id], include_unanswered=include_unanswered)
        except Exception as exc:
            log.warning("command_lookup_failed", imei=device.imei, error=str(exc))
            return
        for command in pending:
            await self._send_command(link, command)

    async def _send_command(self, link: DeviceLink, command: CommandRecord) -> None:
        if command.id in self._commands_in_flight:
            return
        self._commands_in_flight.add(command.id)
        try:
            seq = command_seq(command.id)
            # Marked first: a command that expired since it was read never goes out, and one
            # that goes out is `sent`, so its COMMAND_RESULT finds it (a lost send goes again
            # after the next LOGIN).
            if not await self._store.mark_command_sent(command.id, seq):
                log.info("command_expired_unsent", imei=command.imei, command_id=command.id)
                return
            data = link.session.command(seq, command.cmd, command.args)
            if data is None:
                # The device's protocol has no such command: it ends `unsupported` at once, stored
                # (and announced to webhooks) exactly as the COMMAND_RESULT status 2 of an insole.
                if self._record_result is not None:
                    self._record_result(link, CommandResult(seq, seq, COMMAND_UNSUPPORTED))
                log.info(
                    "command_unsupported",
                    imei=command.imei,
                    protocol=link.session.protocol,
                    cmd=command.cmd,
                    command_id=command.id,
                )
                return
            link.send(data)
            metrics.commands_sent.inc()
            log.info("command_sent", imei=command.imei, cmd=command.cmd, seq=seq, command_id=command.id)
        except Exception as exc:
            log.warning("command_send_failed", imei=command.imei, command_id=command.id, error=str(exc))
        finally:
            self._commands_in_flight.discard(command.id)
