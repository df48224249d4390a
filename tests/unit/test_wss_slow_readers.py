"""SlowReaders' decisions on python-engineio's real queue, with a fake connection and clock.

The integration tests (tests/integration/test_wss_slow_readers.py) drive a real
server; these pin the rule between "the client is slow" and "the server is".
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from services.wss.backpressure import SlowReaders, positions_coalesced, slow_readers_disconnected


@dataclass
class Session:
    """What SlowReaders reads of an Engine.IO socket."""

    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    closed: bool = False
    closing: bool = False


@dataclass
class Connection:
    """A transport whose backlog the test sets."""

    backlog: int = 0
    aborted: bool = False

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def abort(self) -> None:
        self.aborted = True


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def readers_with(session: Session, connection: Connection, clock: Clock) -> SlowReaders:
    readers = SlowReaders({"s1": session}, queue_limit=3, timeout=5.0, clock=clock)
    readers.attach("s1", connection)  # type: ignore[arg-type]  # the two transport methods it uses
    return readers


def queued(session: Session) -> list[object]:
    return list(session.queue._queue)  # type: ignore[attr-defined]  # asyncio.Queue keeps a deque


async def test_past_the_limit_only_each_devices_newest_waits_and_goes_out_in_turn() -> None:
    session, clock = Session(), Clock()
    readers = readers_with(session, Connection(), clock)
    coalesced = positions_coalesced._value.get()
    for n, device in enumerate(["a", "b", "c", "d", "e", "d", "e", "d"]):
        readers.send_position("s1", device, (device, n))
    assert queued(session) == [("a", 0), ("b", 1), ("c", 2)]
    assert readers.held("s1") == 2  # d and e, each at its newest
    assert positions_coalesced._value.get() == coalesced + 3
    session.queue.get_nowait()
    session.queue.get_nowait()  # the client read two
    readers.sweep()
    assert queued(session) == [("c", 2), ("e", 6), ("d", 7)]  # d waited its turn again with its newest
    assert readers.held("s1") == 0


async def test_a_session_behind_only_because_the_server_is_busy_is_never_cut() -> None:
    session, connection, clock = Session(), Connection(backlog=0), Clock()
    readers = readers_with(session, connection, clock)
    for n in range(10):
        readers.send_position("s1", f"d{n}", n)
    for _ in range(10):
        clock.now += 1.0
        readers.sweep()
    assert not connection.aborted and readers.held("s1") == 7


async def test_a_session_behind_with_a_congested_connection_is_cut_after_the_timeout() -> None:
    session, connection, clock = Session(), Connection(backlog=65_536), Clock()
    readers = readers_with(session, connection, clock)
    cut = slow_readers_disconnected._value.get()
    for n in range(10):
        readers.send_position("s1", f"d{n}", n)
    readers.sweep()
    clock.now += 4.0
    readers.sweep()
    assert not connection.aborted
    clock.now += 2.0
    readers.sweep()
    assert connection.aborted and slow_readers_disconnected._value.get() == cut + 1
    assert readers.held("s1") == 0 and session.queue.empty()  # nothing is kept for it
