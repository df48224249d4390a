"""The outbox port (shared/store/outbox.py) for every adapter in STORE_FACTORIES: what commits
queue for the relay, in commit order, until removed.

Only port methods are used, never an adapter's tables. Each test gets a fresh, empty store.
"""

from __future__ import annotations

from shared.bus.topics import TOPIC_ALARM, TOPIC_TELEMETRY
from shared.store import Store
from shared.store.messages import telemetry_items
from tests.contract.store_data import TS, add_device, frame, position, sos
from tests.helpers.stored import commit_frames


async def test_outbox_in_commit_order_with_cursor_and_removal(store: Store) -> None:
    device = await add_device(store)
    for n in range(1, 6):
        await commit_frames(store, [frame(device, position(n, TS + n))])
    await commit_frames(store, [frame(device, sos(6, TS + 6))])
    entries = await store.outbox_pending(100)
    assert [e.topic for e in entries] == [TOPIC_TELEMETRY] * 5 + [TOPIC_ALARM]
    assert [e.id for e in entries] == sorted(e.id for e in entries) and len({e.id for e in entries}) == 6
    assert [[p["seq"] for p in telemetry_items(e.payload, "positions")] for e in entries[:5]] == [
        [n] for n in range(1, 6)
    ]

    assert await store.outbox_pending(2) == entries[:2]
    assert await store.outbox_pending(2, after_id=entries[1].id) == entries[2:4]
    assert await store.outbox_pending(100, after_id=entries[-1].id) == []

    await store.outbox_remove([entries[0].id, entries[2].id])
    assert await store.outbox_pending(100) == [entries[1], *entries[3:]]
    await store.outbox_remove([entries[0].id])  # removing twice is harmless
    await store.outbox_remove([])
    await store.outbox_remove([e.id for e in entries])
    assert await store.outbox_pending(100) == []

    # Ids keep growing after removal, so a relay's cursor never skips a new entry.
    await commit_frames(store, [frame(device, position(7, TS + 7))])
    [new] = await store.outbox_pending(100, after_id=entries[-1].id)
    assert new.id > entries[-1].id
