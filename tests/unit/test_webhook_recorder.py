"""The webhook sender's group commit (services/notifications/webhooks_recorder.py): attempts ending
together are written in one store call, each learns its own result, and a store that fails tells
every attempt of the batch (their leases then run out and they are sent again: nothing is lost)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.notifications.webhooks_recorder import AttemptRecorder
from shared.store.webhooks import AttemptOutcome

DONE = AttemptOutcome("delivered", 204, None, None, 1.0, 1.0)


class Store:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail

    async def finish_webhook_attempts(
        self, attempts: Sequence[tuple[int, AttemptOutcome]], *, owner: str
    ) -> list[bool]:
        self.calls.append([delivery_id for delivery_id, _ in attempts])
        if self.fail:
            raise ConnectionError("the store is down")
        return [delivery_id % 2 == 0 for delivery_id, _ in attempts]  # odd ids: lease lost meanwhile


async def test_attempts_ending_together_are_written_once_each_with_its_own_result() -> None:
    store = Store()
    recorder = AttemptRecorder(store, "me", window=0.01)  # type: ignore[arg-type]  # a fake of the one call
    results = await asyncio.gather(*(recorder.record(n, DONE) for n in range(6)))
    assert results == [True, False, True, False, True, False]
    assert store.calls == [[0, 1, 2, 3, 4, 5]]
    assert await recorder.record(8, DONE) is True  # a later one: a write of its own
    assert store.calls[-1] == [8]
    await recorder.close()


async def test_a_failing_store_fails_every_attempt_of_the_batch() -> None:
    store = Store(fail=True)
    recorder = AttemptRecorder(store, "me", window=0.01)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(*(recorder.record(n, DONE) for n in range(3)), return_exceptions=True)
    assert [type(o) for o in outcomes] == [ConnectionError] * 3
    store.fail = False
    assert await recorder.record(2, DONE) is True  # the recorder goes on once the store is back
    with pytest.raises(ConnectionError):
        store.fail = True
        await recorder.record(4, DONE)
    await recorder.close()
