"""Retention (CONTRACT §8): deleting what a tenant keeps no longer, a bounded chunk at a time.

Each call deletes at most `limit` units (SQLite: runs of frames; MongoDB:
documents of each collection) in one short write, so the caller can yield
between chunks and ingestion never waits long behind a purge. The counts are
what was deleted: frames of each kind, alerts with their timeline entries and
notification records. A chunk that found nothing more says so (`more`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

TELEMETRY_KINDS = ("positions", "heartbeats", "activities")
ALERT_KINDS = ("alerts", "alert_events", "notifications")


@dataclass(frozen=True, slots=True)
class PurgeChunk:
    deleted: dict[str, int] = field(default_factory=dict)  # kind (TELEMETRY_KINDS, ALERT_KINDS) -> how many
    more: bool = False  # the chunk was full: call again, there may be more past the cut-off


class RetentionStore(Protocol):
    async def purge_telemetry(self, tenant_id: int | None, before: int, *, limit: int = 500) -> PurgeChunk:
        """Delete a chunk of the positions, heartbeats and activities whose device time is
        before `before` (unix seconds), of the tenant's devices; `tenant_id` None: of the
        devices no longer registered (retired without erasure), whose tenant is gone with them."""
        ...

    async def purge_alerts(self, tenant_id: int, resolved_before: float, *, limit: int = 200) -> PurgeChunk:
        """Delete a chunk of the tenant's alerts resolved before `resolved_before` (unix
        seconds), with their timelines, notification records and the alarms they came from.
        Open and acknowledged alerts are never deleted."""
        ...
