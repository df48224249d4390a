"""shared/waiting.py: a wait with a deadline that never swallows its task's cancellation."""

from __future__ import annotations

import asyncio

import pytest

from shared.waiting import wait_event


async def test_it_says_whether_the_event_came_before_the_deadline() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True


@pytest.mark.parametrize("turns_before_cancel", [0, 1, 2, 3])
async def test_a_loop_waiting_on_it_stops_when_cancelled_even_as_the_event_is_set(turns_before_cancel: int) -> None:
    """The service loops' shape: cancelled in the very turn its event is set, it still stops."""
    event = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            await wait_event(event, 0.05)
            event.clear()
            rounds += 1

    for _ in range(50):
        task = asyncio.create_task(loop())
        for _ in range(turns_before_cancel):
            await asyncio.sleep(0)
        event.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1)
