"""Handing MQTT devices over from a listener process that died to one that lives.

Over MQTT no connection breaks when a listener dies: its devices' sessions
live on in the cache, and so would their ownership, the right to send them
downlink commands. Each owner therefore renews a short-lived mark every
`OWNER_HEARTBEAT_S` and keeps the list of the devices it holds in the cache
(mqtt_sessions.py); every process looks for owners whose mark lapsed as often,
and adopts their devices: one process per device (a claim in the cache), which
holds it from then on and sends it the commands still unanswered. A crash is
thus noticed within `OWNER_TTL_S`, and the devices are held elsewhere one
sweep later, whatever the idle timeout and whether or not the devices send
anything meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from services.listener.mqtt_sessions import OWNED_REFRESH_S, OWNER_HEARTBEAT_S, SessionInfo, Sessions
from shared.logging import get_logger
from shared.waiting import wait_event

log = get_logger("solewatch.listener.mqtt")
OWNED_WRITE_DELAY_S = 0.05  # logins within this share one write of the owned list
ADOPT_AT_ONCE = 64  # a dead owner's devices are adopted this many at a time


class Adoptable(Protocol):
    async def adopt(self, info: SessionInfo) -> None: ...


class Handover:
    def __init__(
        self,
        *,
        instance_id: str,
        sessions: Sessions,
        held_here: Callable[[], set[str]],
        link_for: Callable[[str], Adoptable],
        lost: Callable[[], None],
    ):
        self._id = instance_id
        self._sessions = sessions
        self._held_here = held_here  # the IMEIs this bridge's links hold
        self._link_for = link_for  # this bridge's link for an IMEI, made if need be
        self._lost = lost  # our mark lapsed: check at once which devices are still ours
        self._owned_changed = asyncio.Event()
        self._written: set[str] | None = None
        self._written_at = 0.0
        self.stopped = False

    def owned_changed(self) -> None:
        self._owned_changed.set()

    async def heartbeat(self) -> None:
        """Renew our mark, on its own task: adopting many devices must not delay it."""
        first = True
        while not self.stopped:  # a drained bridge's mark stays deleted: others adopt its devices
            try:
                if not await self._sessions.heartbeat(self._id) and not first:
                    log.warning("mqtt_owner_mark_lapsed", owner=self._id)
                    self._lost()
                first = False
            except Exception as exc:
                log.warning("mqtt_owner_heartbeat_failed", error=str(exc))
            await asyncio.sleep(OWNER_HEARTBEAT_S)

    async def sweep(self) -> None:
        """Look for dead owners as often as owners renew their marks, and adopt their devices."""
        while not self.stopped:
            await asyncio.sleep(OWNER_HEARTBEAT_S)
            try:
                await self.adopt_from_dead_owners()
            except Exception as exc:
                log.warning("mqtt_handover_sweep_failed", error=str(exc))

    async def keep_owned_list(self) -> None:
        while True:
            await wait_event(self._owned_changed, OWNED_REFRESH_S)
            self._owned_changed.clear()
            await asyncio.sleep(OWNED_WRITE_DELAY_S)
            if self.stopped:
                return
            held = self._held_here()
            if held == self._written and time.monotonic() - self._written_at < OWNED_REFRESH_S:
                continue
            try:
                await self._sessions.set_owned(self._id, held)
                self._written, self._written_at = held, time.monotonic()
            except Exception as exc:
                log.warning("mqtt_owned_list_failed", error=str(exc))
                self._owned_changed.set()  # again at the next turn

    async def adopt_from_dead_owners(self) -> None:
        for owner in await self._sessions.owners():
            if owner == self._id or await self._sessions.owner_alive(owner):
                continue
            imeis = await self._sessions.owned(owner)
            adopted = 0
            for start in range(0, len(imeis), ADOPT_AT_ONCE):
                batch = imeis[start : start + ADOPT_AT_ONCE]
                adopted += sum(await asyncio.gather(*(self._adopt(imei, owner) for imei in batch)))
            await self._sessions.delist(owner)
            log.info("mqtt_owner_gone", owner=owner, devices_adopted=adopted, by=self._id)

    async def _adopt(self, imei: str, owner: str) -> bool:
        if not await self._sessions.claim_adoption(imei, owner):
            return False  # another survivor takes this one
        info = await self._sessions.get(imei)
        if info is None or info.owner != owner:
            return False  # ended, or already held elsewhere (a new login)
        info = info._replace(owner=self._id)
        await self._sessions.put(imei, info)
        await self._link_for(imei).adopt(info)
        return True
