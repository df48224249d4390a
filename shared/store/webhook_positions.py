"""The `positions` webhook event (CONTRACT §7): positions owed to endpoints, batched once a second.

Positions are appended as *pending rows*, one per (endpoint, telemetry bus message, part), each
holding a list of position items already in the event's shape. Appending is idempotent on that
key: a telemetry message heard again adds nothing, for as long as its row is kept (pending, then
`MARKER_KEEP_S` after it went into a batch, as a marker with its items dropped).

Batching (`batch_pending_positions`) turns an endpoint's pending rows, oldest first and at most
`MAX_BATCH_ITEMS` items, into one ordinary webhook delivery of type `positions`, in one store
operation: the delivery is inserted and the rows it took are marked with its event id together
(SQLite: one transaction; MongoDB: rows are first tagged with the event id, which is derived from
the rows taken, so a batch stopped half way is finished with the same rows and id by the next
pass). An endpoint gets a new batch only when its previous positions delivery is no longer pending
and was delivered at least `min_gap_s` ago: so at most one positions delivery reaches it a second,
retries included, and a receiver that is down holds one batch in retry while the rest wait as
pending rows (sent afterwards, `MAX_BATCH_ITEMS` a second).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from shared.alerts import iso_utc

# The most positions one delivery carries (about 150 kB of JSON); the rest go in the next batch.
MAX_BATCH_ITEMS = 1000
# How long a batched row is kept as a marker: a telemetry message redelivered within this time
# adds nothing. The bus redelivers within seconds; only a relay replaying its outbox after a long
# stop comes later.
MARKER_KEEP_S = 600.0
POSITIONS_EVENT = "positions"

# A position item of a pending row: (device id, the item as the event carries it).
PositionItem = tuple[int, dict[str, Any]]


def batch_event_id(endpoint_id: int, first_row: int, last_row: int) -> str:
    """The event id of the batch made of an endpoint's pending rows first_row..last_row: the same
    whoever derives it and when, so a batch redone after a stop is the same event."""
    digest = hashlib.sha256(f"positions:{endpoint_id}:{first_row}:{last_row}".encode()).hexdigest()
    return f"evt_{digest[:24]}"


def positions_body(event_id: str, created_at: float, items: Sequence[dict[str, Any]]) -> bytes:
    """The JSON every attempt of a positions delivery posts."""
    return orjson.dumps(
        {
            "id": event_id,
            "type": POSITIONS_EVENT,
            "created_at": iso_utc(created_at, millis=True),
            "data": {"items": list(items)},
        }
    )


def without_device(payload: bytes, imei: str) -> bytes:
    """A positions body with the items of one device left out (its erasure), the rest as it was."""
    event = orjson.loads(payload)
    event["data"]["items"] = [item for item in event["data"]["items"] if item.get("imei") != imei]
    return orjson.dumps(event)


def parts(items: Sequence[PositionItem], size: int = MAX_BATCH_ITEMS) -> list[Sequence[PositionItem]]:
    """A message's items in rows of at most `size`, so that any one row fits in a batch."""
    return [items[start : start + size] for start in range(0, len(items), size)]


class WebhookPositionsStore(Protocol):
    async def positions_subscribers(self) -> dict[int, list[int]]:
        """Tenant id -> its enabled endpoints subscribed to `positions`, for every tenant that has any."""

    async def add_pending_positions(
        self,
        *,
        tenant_id: int,
        endpoint_ids: Sequence[int],
        message_id: str,
        items: Sequence[PositionItem],
        at: float,
    ) -> int:
        """Owe `items` to each endpoint; a (endpoint, message id) already added is left as it is.
        Returns how many endpoints got them now."""

    async def pending_positions(self, endpoint_id: int) -> list[dict[str, Any]]:
        """The items owed to an endpoint and not yet in a batch, oldest first."""

    async def batch_pending_positions(
        self, *, now: float, max_items: int = MAX_BATCH_ITEMS, min_gap_s: float = 1.0
    ) -> int:
        """Make one positions delivery (due now) for each endpoint with pending items whose previous
        positions delivery is no longer pending and was delivered at least `min_gap_s` ago;
        returns how many deliveries were made."""
