"""Codes for acknowledging an alert by replying to its SMS (CONTRACT §6), and the inbound
messages already answered.

A code is issued when an alert SMS goes to a phone number: 4 digits, kept for
that (phone, alert) however often the SMS is resent, and unique among the
codes of that phone's unresolved alerts (in every tenant, so a reply is never
ambiguous; a resolved alert's code becomes free again). A reply is looked up
by its sender's number and the code, so only the alerts notified to that
phone can be reached: a code guessed from another phone matches nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

CODE_DIGITS = 4
INBOUND_KEPT_S = 7 * 86400  # Twilio retries within minutes; a week of answered messages is plenty


class ReplyCodesExhausted(Exception):
    """The phone already holds a code for every 4-digit value (10,000 unresolved alerts)."""


@dataclass(frozen=True, slots=True)
class ReplyCode:
    """An unresolved alert notified by SMS to `phone` (as `contact_id` of `tenant_id`)."""

    phone: str
    code: str
    tenant_id: int
    alert_id: int
    contact_id: int


def new_reply_code(used: Collection[str]) -> str:
    """A random code not in `used` (random, so the next alert's code cannot be inferred)."""
    if len(used) >= 10**CODE_DIGITS:
        raise ReplyCodesExhausted("no free reply code left for this phone")
    while True:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        if code not in used:
            return code


class SmsReplyStore(Protocol):
    async def issue_reply_code(self, *, tenant_id: int, alert_id: int, contact_id: int, phone: str) -> str:
        """The code of this alert for this phone: made the first time, the same one after."""

    async def reply_codes(self, phone: str) -> list[ReplyCode]:
        """The codes of the unresolved alerts notified to `phone`, oldest alert first."""

    async def inbound_sms_answer(self, message_sid: str) -> str | None:
        """The answer already given to this inbound message (Twilio retries), if any."""

    async def remember_inbound_sms(self, message_sid: str, answer: str) -> None:
        """Keep the answer to an inbound message for its retries (the first answer stays)."""
