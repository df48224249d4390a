"""The live feed hands each turn's newest position per device to the views, and nothing when no one watches."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.live_feed import LiveFeed
from shared.store.batch import DeviceRef
from tests.helpers.api import T0, position

ALICE = DeviceRef(1, 7, "356307042441013")
BOB = DeviceRef(2, 7, "490154203237518")


class View:
    def __init__(self, watching: bool = True) -> None:
        self.watching = watching
        self.handed: list[list[dict[str, Any]]] = []

    def __call__(self, items: list[dict[str, Any]]) -> None:
        self.handed.append(items)


async def test_a_turn_of_positions_reaches_the_view_once_newest_per_device() -> None:
    feed, view = LiveFeed(), View()
    feed.attach(view, watching=lambda: view.watching)
    feed.offer_newest(ALICE, [tuple(position(1, T0)), tuple(position(3, T0 + 2)), tuple(position(2, T0 + 1))], 10.0)
    feed.offer(BOB, position(9, T0 + 5, lat_e7=1), 11.0)
    assert view.handed == []  # handed over at the end of the turn, not frame by frame
    await asyncio.sleep(0)
    [items] = view.handed
    by_imei = {item["imei"]: item for item in items}
    assert by_imei[ALICE.imei]["ts"] == T0 + 2 and by_imei[ALICE.imei]["seq"] == 3
    assert (by_imei[BOB.imei]["tenant_id"], by_imei[BOB.imei]["device_id"], by_imei[BOB.imei]["lat_e7"]) == (7, 2, 1)
    assert by_imei[BOB.imei]["received_at"] == 11.0


async def test_an_older_fix_arriving_later_does_not_move_the_worker_back() -> None:
    feed, view = LiveFeed(), View()
    feed.attach(view, watching=lambda: True)
    feed.offer(ALICE, position(5, T0 + 60), 1.0)
    feed.offer(ALICE, position(4, T0), 2.0)  # a buffered frame uploaded after a newer one
    await asyncio.sleep(0)
    assert [item["ts"] for item in view.handed[0]] == [T0 + 60]


async def test_nothing_is_kept_while_no_one_watches() -> None:
    feed, view = LiveFeed(), View(watching=False)
    feed.attach(view, watching=lambda: view.watching)
    feed.offer(ALICE, position(1, T0), 1.0)
    await asyncio.sleep(0)
    assert view.handed == []
    view.watching = True
    feed.offer(ALICE, position(2, T0 + 1), 2.0)
    await asyncio.sleep(0)
    assert [[item["seq"] for item in items] for items in view.handed] == [[2]]
