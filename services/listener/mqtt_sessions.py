"""MQTT login sessions and who owns them, in the cache every listener process shares.

A device's session (`mqtt:session:{imei}`: device id, tenant id, owner) lives
as long as the idle timeout after its last message. Its *owner* is the
MqttIngest instance that delivers the device's downlink commands; an owner
proves it is alive by renewing `mqtt:ingest:{owner}` every
`OWNER_HEARTBEAT_S`, and lists the devices it holds in `mqtt:owned:{owner}`.
`mqtt:owners` lists the owners, so that a survivor finds a dead one's devices
and adopts them within `OWNER_TTL_S + OWNER_HEARTBEAT_S` of its last
heartbeat, whatever the idle timeout (docs/mqtt.md promises
`HANDOVER_BOUND_S` from a crash to a queued command's delivery).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import orjson

from shared.cache import Cache

OWNER_TTL_S = 3.0  # an owner silent this long has its devices taken over
OWNER_HEARTBEAT_S = 1.0  # how often an owner renews its mark, and survivors look for dead owners
HANDOVER_BOUND_S = 5.0  # crash to command delivery: TTL + one sweep + the command lookup
SESSION_KEY = "mqtt:session:{imei}"
OWNER_KEY = "mqtt:ingest:{owner}"
OWNED_KEY = "mqtt:owned:{owner}"
OWNERS_KEY = "mqtt:owners"
ADOPTION_KEY = "mqtt:adoption:{imei}:{owner}"
OWNED_TTL_S = 3600.0  # rewritten whenever it changes and at least every OWNED_REFRESH_S
OWNED_REFRESH_S = 600.0


class SessionInfo(NamedTuple):
    """A logged-in device as every listener process sees it (the cache's value)."""

    device_id: int
    tenant_id: int
    owner: str  # the MqttIngest instance that delivers the device's commands


class Sessions:
    """Login sessions and their owners in the cache, shared by every listener process on the broker."""

    def __init__(self, cache: Cache, ttl: Callable[[], float]):
        self.cache = cache
        self._ttl = ttl  # a callable: the idle timeout may change on reload

    # -- sessions --------------------------------------------------------------------------

    async def get(self, imei: str) -> SessionInfo | None:
        raw = await self.cache.get(SESSION_KEY.format(imei=imei))
        if raw is None:
            return None
        try:
            value = orjson.loads(raw)
            return SessionInfo(int(value["device_id"]), int(value["tenant_id"]), str(value["owner"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: as if logged out, the device logs in again

    async def put(self, imei: str, info: SessionInfo) -> None:
        await self.cache.set(SESSION_KEY.format(imei=imei), orjson.dumps(info._asdict()), ttl=self._ttl())

    async def end(self, imei: str) -> None:
        await self.cache.delete(SESSION_KEY.format(imei=imei))

    # -- owners ------------------------------------------------------------------------------

    async def owner_alive(self, owner: str) -> bool:
        return await self.cache.get(OWNER_KEY.format(owner=owner)) is not None

    async def heartbeat(self, owner: str) -> bool:
        """Renew `owner`'s mark and listing; False when the mark had lapsed (others may
        have adopted its devices meanwhile)."""
        key = OWNER_KEY.format(owner=owner)
        renewed = not await self.cache.set_if_absent(key, b"1", ttl=OWNER_TTL_S)
        if renewed:
            await self.cache.set(key, b"1", ttl=OWNER_TTL_S)
        # Read, add, write: two owners enlisting at once may lose one; its next heartbeat adds it again.
        owners = await self.owners()
        if owner not in owners:
            await self.cache.set(OWNERS_KEY, orjson.dumps([*owners, owner]))
        return renewed

    async def owner_gone(self, owner: str) -> None:
        """A clean stop: survivors adopt its devices at their next sweep."""
        await self.cache.delete(OWNER_KEY.format(owner=owner))

    async def owners(self) -> list[str]:
        raw = await self.cache.get(OWNERS_KEY)
        try:
            return [str(owner) for owner in orjson.loads(raw)] if raw else []
        except (ValueError, TypeError):
            return []

    async def delist(self, owner: str) -> None:
        owners = await self.owners()
        if owner in owners:
            await self.cache.set(OWNERS_KEY, orjson.dumps([o for o in owners if o != owner]))
        await self.cache.delete(OWNED_KEY.format(owner=owner))

    async def set_owned(self, owner: str, imeis: Iterable[str]) -> None:
        await self.cache.set(OWNED_KEY.format(owner=owner), orjson.dumps(sorted(imeis)), ttl=OWNED_TTL_S)

    async def owned(self, owner: str) -> list[str]:
        raw = await self.cache.get(OWNED_KEY.format(owner=owner))
        try:
            return [str(imei) for imei in orjson.loads(raw)] if raw else []
        except (ValueError, TypeError):
            return []

    async def claim_adoption(self, imei: str, dead_owner: str) -> bool:
        """True for exactly one survivor: the one that adopts `imei` from `dead_owner`."""
        return await self.cache.set_if_absent(ADOPTION_KEY.format(imei=imei, owner=dead_owner), b"1", ttl=60.0)
