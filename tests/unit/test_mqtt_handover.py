"""Handing a dead MQTT owner's devices over (services/listener/mqtt_handover.py), on a memory cache."""

from __future__ import annotations

import asyncio

from services.listener.mqtt_handover import Handover
from services.listener.mqtt_sessions import OWNER_KEY, SessionInfo, Sessions
from shared.cache.memory import MemoryCache

DEAD, ALIVE = "solewatch-dead", "solewatch-alive"
IMEIS = [f"35630704244{i:04d}" for i in range(5)]


class YieldingCache(MemoryCache):
    """A memory cache whose every operation lets other tasks run, as a network round trip does."""

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(0)
        return await super().get(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        await asyncio.sleep(0)
        await super().set(key, value, ttl=ttl)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        await asyncio.sleep(0)
        return await super().set_if_absent(key, value, ttl=ttl)


class Link:
    def __init__(self, adopted: list[tuple[str, str, SessionInfo]], owner: str, imei: str):
        self.adopted, self.owner, self.imei = adopted, owner, imei

    async def adopt(self, info: SessionInfo) -> None:
        self.adopted.append((self.owner, self.imei, info))


def survivor(sessions: Sessions, name: str, adopted: list[tuple[str, str, SessionInfo]]) -> Handover:
    return Handover(
        instance_id=name,
        sessions=sessions,
        held_here=set,
        link_for=lambda imei: Link(adopted, name, imei),
        lost=lambda: None,
    )


async def test_each_device_of_a_dead_owner_is_adopted_once_by_one_survivor() -> None:
    sessions = Sessions(YieldingCache(), lambda: 300.0)
    for imei in IMEIS:
        await sessions.put(imei, SessionInfo(1, 1, DEAD))
    await sessions.put(IMEIS[0], SessionInfo(1, 1, ALIVE))  # logged in again elsewhere since
    await sessions.set_owned(DEAD, IMEIS)
    for name in ("survivor-a", "survivor-b", DEAD):
        await sessions.heartbeat(name)  # lists each
    await sessions.cache.delete(OWNER_KEY.format(owner=DEAD))  # its mark lapsed: it died
    adopted: list[tuple[str, str, SessionInfo]] = []

    await asyncio.gather(
        survivor(sessions, "survivor-a", adopted).adopt_from_dead_owners(),
        survivor(sessions, "survivor-b", adopted).adopt_from_dead_owners(),
    )

    assert sorted(imei for _, imei, _ in adopted) == IMEIS[1:]
    for adopter, imei, info in adopted:
        assert info.owner == adopter and await sessions.get(imei) == info
    assert (await sessions.get(IMEIS[0])).owner == ALIVE  # type: ignore[union-attr]
    assert DEAD not in await sessions.owners()


async def test_a_living_owner_keeps_its_devices() -> None:
    sessions = Sessions(MemoryCache(), lambda: 300.0)
    await sessions.put(IMEIS[0], SessionInfo(1, 1, ALIVE))
    await sessions.set_owned(ALIVE, IMEIS[:1])
    await sessions.heartbeat(ALIVE)
    adopted: list[tuple[str, str, SessionInfo]] = []

    await survivor(sessions, "survivor-a", adopted).adopt_from_dead_owners()

    assert adopted == []


async def test_a_heartbeat_tells_when_the_mark_had_lapsed() -> None:
    sessions = Sessions(MemoryCache(), lambda: 300.0)
    assert not await sessions.heartbeat(ALIVE)  # the first: there was none
    assert await sessions.heartbeat(ALIVE)
    await sessions.cache.delete(OWNER_KEY.format(owner=ALIVE))  # a stalled loop let it expire
    assert not await sessions.heartbeat(ALIVE)
