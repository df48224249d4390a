"""The retention purge (CONTRACT §8): what each tenant keeps no longer, deleted in bounded chunks.

It runs in the notifications service, at start and then every
`retention_purge_interval` (at most an hour): that service already does the
store's periodic work under a lease in the shared cache (offline checks,
webhook deliveries) and is on neither the ingest path (the listener) nor the
request path (the API), so a purge's reads never sit in their way. The lease
keeps it to one process at a time in the distributed mode; `solewatch purge`
runs `purge_expired` once from the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from services.notifications.periodic import PeriodicJob
from shared.bus.outbox import CacheLease
from shared.cache import Cache
from shared.config import Settings
from shared.logging import get_logger
from shared.store.accounts import AccountStore
from shared.store.audit import Actor, AuditEntry, AuditStore
from shared.store.retention import ALERT_KINDS, TELEMETRY_KINDS, PurgeChunk, RetentionStore
from shared.store.tenant_settings import TenantSettings, TenantSettingsStore

log = get_logger("solewatch.retention")

DAY_S = 86400
# After each chunk the purge rests, so that it takes at most this share of the time: ingestion
# shares its process (the event loop, the GIL) and SQLite's single writer. A tenth still deletes
# thousands of runs a second, far more than a fleet stores (docs/storage.md, "Retention").
DUTY = 0.1
# The shortest rest: ingestion's commits, queued behind a chunk on the writer, go first.
PAUSE_BETWEEN_CHUNKS_S = 0.005
# An alert takes its timeline, notifications and alarm with it (about ten rows): a chunk of
# alerts is this many times smaller than one of runs, to keep the same short write (~1.6 ms
# for 100 alerts on SQLite, against ~7 ms for 500).
ROWS_PER_ALERT = 5


class PurgeStore(AccountStore, TenantSettingsStore, RetentionStore, AuditStore, Protocol):
    """What a purge reads (tenants, their settings), deletes and, run from the CLI, audits."""


async def _always() -> bool:
    return True


async def purge_expired(
    store: PurgeStore,
    *,
    now: float | None = None,
    chunk: int = 500,
    keep_going: Callable[[], Awaitable[bool]] = _always,
    rest: Callable[[float], Awaitable[object]] = asyncio.sleep,
    actor: Actor | None = None,
) -> dict[str, Any]:
    """Delete, chunk by chunk, what is past each tenant's retention; the counts per tenant and kind.

    Telemetry of devices no longer registered (retired without erasure) has no tenant
    left to say how long: it is kept as long as the longest retention of any tenant,
    the default included. `keep_going` is asked before each chunk; False stops the purge
    there (what was deleted so far stays deleted, the next purge carries on). `rest(seconds)`
    waits between chunks (see DUTY).

    With an `actor` (`solewatch purge`: a change made through the CLI), each tenant that
    lost something gets one `retention.purge` audit entry with the counts and cut-offs.
    A purge is many writes, so the entry follows them rather than sharing one: a purge
    stopped half way leaves its chunks without an entry, deletions the tenant's audited
    settings made due anyway. The hourly purge writes none (it logs `retention_purged`)."""
    now = time.time() if now is None else now
    report: dict[str, Any] = {"tenants": {}, "unregistered_devices": {}}
    longest = TenantSettings().telemetry_retention_days
    chunks = partial(_chunks, keep_going=keep_going, rest=rest)
    for tenant in await store.tenants():
        settings = await store.tenant_settings(tenant.id)
        longest = max(longest, settings.telemetry_retention_days)
        telemetry_before = int(now) - settings.telemetry_retention_days * DAY_S
        resolved_before = now - settings.alert_retention_days * DAY_S
        counts = await chunks(partial(store.purge_telemetry, tenant.id, telemetry_before, limit=chunk))
        alerts = max(1, chunk // ROWS_PER_ALERT)
        counts += await chunks(partial(store.purge_alerts, tenant.id, resolved_before, limit=alerts))
        deleted = {kind: counts[kind] for kind in TELEMETRY_KINDS + ALERT_KINDS}
        report["tenants"][tenant.name] = deleted
        if actor is not None and any(deleted.values()):
            cut_offs = {"telemetry_before": telemetry_before, "resolved_before": resolved_before}
            entry = AuditEntry(tenant.id, actor, "retention.purge", "tenant", str(tenant.id), deleted | cut_offs)
            await store.record_audit(entry)
    before = int(now) - longest * DAY_S
    counts = await chunks(partial(store.purge_telemetry, None, before, limit=chunk))
    report["unregistered_devices"] = {kind: counts[kind] for kind in TELEMETRY_KINDS}
    return report


async def _chunks(
    purge: Callable[[], Awaitable[PurgeChunk]],
    keep_going: Callable[[], Awaitable[bool]],
    rest: Callable[[float], Awaitable[object]],
) -> Counter[str]:
    """Call `purge` until a chunk says nothing more is left, resting after each one; what they deleted."""
    total: Counter[str] = Counter()
    while await keep_going():
        started = time.monotonic()
        done = await purge()
        total.update(done.deleted)
        if not done.more:
            break
        # A chunk slowed by a busy process rests longer: the purge gives way to ingestion.
        await rest(max(PAUSE_BETWEEN_CHUNKS_S, (time.monotonic() - started) * (1 - DUTY) / DUTY))
    return total


class RetentionPurger(PeriodicJob):
    """Runs `purge_expired` at start and every `retention_purge_interval`, one process at a time."""

    name = "retention-purge"

    def __init__(self, store: PurgeStore, cache: Cache, settings: Settings):
        super().__init__()
        self._store = store
        self._lease = CacheLease(cache, "retention-purge:leader")
        self.configure(settings)
        self.last_report: dict[str, Any] | None = None  # the latest purge's counts, for logs and tests

    def configure(self, settings: Settings) -> None:
        self.interval = settings.retention_purge_interval
        self.chunk = settings.retention_purge_chunk

    async def _keep_going(self) -> bool:
        return not self.stopping and await self._lease.held()

    async def run_once(self) -> None:
        try:
            if await self._lease.held():
                started = time.monotonic()
                self.last_report = await purge_expired(
                    self._store, chunk=self.chunk, keep_going=self._keep_going, rest=self.rest
                )
                log.info("retention_purged", seconds=round(time.monotonic() - started, 3), **self.last_report)
        finally:
            with contextlib.suppress(Exception):
                await self._lease.release()
