"""Waiting for an event with a deadline, in loops that must stop when their task is cancelled.

Python 3.11's `asyncio.wait_for` can swallow a cancellation: when the awaited
thing finishes in the same loop turn as the cancel, it returns the result and
the task goes on (CPython gh-86296, fixed in 3.12 by building `wait_for` on
`asyncio.timeout`). A service loop of the form `while True: ...; await
wait_for(event.wait(), poll)` then never stops, and a drain waiting for it
hangs: the webhook sender, polling every 50 ms in a test, did so once in CI.
`asyncio.timeout` has no such gap.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; whether it was set. A cancellation always propagates."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()
