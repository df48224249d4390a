"""The audit log (CONTRACT §5): one append-only entry per change made through the API or the CLI.

A change and its entry cannot part. Each store method that changes something
takes the entry (`audit=`) and writes it with the change: in the change's
transaction on SQLite, with the change's own document write on MongoDB
(mongo_audit.py says how). Reads that must leave a trace (a worker's history,
an export) and events that change nothing stored (a login, a refused login)
are written alone with `record_audit`.

Entries are never changed or deleted through any port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ActorType = Literal["user", "api_key", "contact", "system"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made the change: a signed-in user, a partner's API key, a contact acknowledging
    by SMS, call or push, or solewatch itself (the CLI, a detector)."""

    type: ActorType
    id: str | None
    label: str  # what a reader of the log recognises: an email, a key's name, a contact's name

    @classmethod
    def system(cls, label: str = "solewatch") -> Actor:
        return cls("system", None, label)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What a change records; the store gives it its id and time."""

    tenant_id: int
    actor: Actor
    action: str  # e.g. "device.update": see CONTRACT §5 for the list
    target_type: str  # "device", "user", "alert"...
    target_id: str | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: float
    entry: AuditEntry


class AuditStore(Protocol):
    async def record_audit(self, entry: AuditEntry) -> AuditRecord:
        """Append an entry that goes with no stored change (a read, a login)."""

    async def audit_log(
        self,
        tenant_id: int,
        *,
        since: float | None = None,
        until: float | None = None,
        action: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The tenant's entries newest first; `since` inclusive, `until` exclusive;
        `before_id` is the cursor (the last id of the previous page)."""
