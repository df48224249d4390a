"""Reads that leave a trace in the audit log (CONTRACT §5): someone read a worker's history or exported it.

One entry per read, not per page. A dashboard drawing a day of a worker's
track pages through thousands of positions; an entry per page would bury the
one line an auditor looks for ("who looked at Alice's track last night?").
So the page asked for without a cursor records the read, with the range as
asked, and the `next_cursor` it hands out is remembered (in the cache, for
`CONTINUATION_TTL_S`) as belonging to that caller's read. A later page whose
cursor is one of those continues the same read and records nothing.

Any other cursor (one taken from another caller, kept for days, or built by
hand: cursors are opaque, not secret) starts a read of its own and records an
entry naming that cursor. When the cache cannot answer, the page is recorded:
a read may be logged twice, never not at all. The entry is written before the
data is returned, so a read the store cannot record fails (503) instead of
going unlogged.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from services.authn.deps import Principal
from services.context import ServiceContext
from shared.cache import CacheUnavailable
from shared.logging import get_logger
from shared.store import Device

log = get_logger("solewatch.audit")

CONTINUATION_TTL_S = 3600.0  # how long a page's next_cursor continues the read that handed it out


def _continuation_key(principal: Principal, device: Device, read: dict[str, Any], cursor: str) -> str:
    """Names a cursor as handed to this caller for this read: the same device, the same kind of
    history, the same range. A cursor reused for another range starts a read of its own."""
    who = f"{principal.tenant_id}:{principal.via}:{principal.user_id}:{principal.api_key_id}"
    what = orjson.dumps(read, option=orjson.OPT_SORT_KEYS).decode()
    digest = hashlib.sha256(f"{who}:{device.id}:{what}:{cursor}".encode()).hexdigest()[:32]
    return f"audit:read:{digest}"


async def record_read(
    context: ServiceContext,
    principal: Principal,
    device: Device,
    *,
    action: str,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    next_cursor: str | None,
    **detail: Any,
) -> bool:
    """Record the read of one page of a device's history unless it continues a read this caller
    already recorded; remember `next_cursor` as part of this read. True when an entry was written."""
    read = {"action": action, "since": _iso(since), "until": _iso(until), **detail}
    continues = False
    if cursor is not None:
        try:
            continues = await context.cache.get(_continuation_key(principal, device, read, cursor)) is not None
        except CacheUnavailable:
            continues = False  # record it again rather than risk not recording it
    if not continues:
        entry = principal.audit(
            action, "device", device.imei, since=read["since"], until=read["until"], cursor=cursor, **detail
        )
        await context.store.record_audit(entry)
    if next_cursor is not None:
        try:
            key = _continuation_key(principal, device, read, next_cursor)
            await context.cache.set(key, b"1", ttl=CONTINUATION_TTL_S)
        except CacheUnavailable:
            log.warning("read_continuation_not_kept", imei=device.imei, action=action)
    return not continues


def _iso(instant: datetime | None) -> str | None:
    """The bound as the caller gave it, in UTC (a bound without offset is UTC, as the routes read it)."""
    if instant is None:
        return None
    if instant.tzinfo is None:
        return instant.isoformat() + "Z"
    try:
        return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC date; keep it as asked
        return instant.isoformat()
