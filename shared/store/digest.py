"""The weekly digest's claims: one digest per tenant and ISO week, whoever runs the job.

Every notifications process runs the digest job; a claim keyed by (tenant,
week) decides which one sends. The claim is finished once the mail went out.
A claim left unfinished (its process stopped while sending) may be taken
again once older than the caller says, so a restart still sends that week's
digest rather than none: exactly once while processes live, at least once
across a crash in the middle of sending.
"""

from __future__ import annotations

from typing import Protocol


class DigestStore(Protocol):
    async def claim_weekly_digest(self, tenant_id: int, week: str, *, stale_before: float) -> bool:
        """True for the one caller that should send this tenant's digest of `week` (`2026-W10`):
        the first, or one taking over a claim made before `stale_before` and never finished."""

    async def finish_weekly_digest(self, tenant_id: int, week: str, *, recipients: int) -> None:
        """The digest of that week went out (to that many admins): nobody claims it again."""
