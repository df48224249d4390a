"""Positions for the live views of this process, the moment their frames arrive.

The durable path of a position is long: a commit (an fsync) that starts when
the one before it ends, then the outbox relay's read, then the bus. A map
that waits for all of it shows a worker tens of milliseconds late on a quiet
machine and hundreds when the disk stalls, since every position waits behind
the commit in progress. In the all-in-one process the listener hands each
device's newest position straight to the live views instead, once per turn
of the event loop, and the durable path carries everything else (history,
detection, webhooks) as before.

A position can so reach a dashboard before it is stored. If its commit then
fails, the device was answered BUSY and sends the frame again, so what the
map showed is stored on that retry: the map never shows a position the
device has given up on. Live events stay best effort (services/wss): the
REST API holds the truth.

Only newest positions are kept between turns (one per device), so a burst
costs the views no more than the devices in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shared.protocols.xsole.messages import Position
from shared.store.batch import DeviceRef
from shared.store.messages import COLUMNS

PositionItem = dict[str, Any]  # the columns of COLUMNS["positions"], plus the device's tenant id and IMEI
LiveView = Callable[[list[PositionItem]], None]
Watching = Callable[[], bool]

_POSITION_COLUMNS = COLUMNS["positions"]
_TS, _SEQ = Position._fields.index("ts"), Position._fields.index("seq")


class LiveFeed:
    """The listener offers positions; views attached to the feed get each turn's newest per device."""

    def __init__(self) -> None:
        self._views: list[tuple[LiveView, Watching]] = []
        self._newest: dict[int, tuple[DeviceRef, tuple[Any, ...], float]] = {}  # device id -> its newest this turn
        self._scheduled = False

    def attach(self, view: LiveView, *, watching: Watching) -> None:
        """`view` is called with a list of positions, on the event loop, and must not block;
        `watching` says whether anyone looks at it now (no one: positions are not even kept)."""
        self._views.append((view, watching))

    def watched(self) -> bool:
        for _, watching in self._views:
            if watching():
                return True
        return False

    def offer(self, device: DeviceRef, fields: tuple[Any, ...], received_at: float) -> None:
        """A position received from `device` (its fields in Position order)."""
        if not self.watched():
            return
        self._keep(device, fields, received_at)

    def offer_newest(self, device: DeviceRef, positions: list[tuple[Any, ...]], received_at: float) -> None:
        """Several positions of one device (a run of frames): only the newest can matter."""
        if self.watched():  # before looking for the newest: most frames arrive with no dashboard open
            self._keep(device, max(positions, key=_ts_and_seq), received_at)

    def _keep(self, device: DeviceRef, fields: tuple[Any, ...], received_at: float) -> None:
        kept = self._newest.get(device.id)
        if kept is not None and _ts_and_seq(kept[1]) > _ts_and_seq(fields):
            return  # an older fix arrived after a newer one (a resent or buffered frame)
        self._newest[device.id] = (device, fields, received_at)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._hand_over)

    def _hand_over(self) -> None:
        self._scheduled = False
        newest, self._newest = self._newest, {}
        items = [_item(device, fields, received_at) for device, fields, received_at in newest.values()]
        for view, _ in self._views:
            view(items)


def _ts_and_seq(fields: tuple[Any, ...]) -> tuple[int, int]:
    return fields[_TS], fields[_SEQ]


def _item(device: DeviceRef, fields: tuple[Any, ...], received_at: float) -> PositionItem:
    item = dict(zip(_POSITION_COLUMNS, (device.id, *fields, received_at), strict=True))
    item["tenant_id"], item["imei"] = device.tenant_id, device.imei
    return item
