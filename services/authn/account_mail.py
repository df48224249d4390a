"""Single-use links for account emails: invitations (72 h) and password resets (1 h).

A link carries a random token; the store keeps only its SHA-256 (like API
keys: 256 random bits need no slow hash). The email goes through the
notifications service's SMTP sender (SOLEWATCH_SMTP_*). Without an SMTP server,
or when it refuses, `send` says so and the caller decides: an admin inviting
someone gets the link in the answer to hand over another way.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from services.notifications.email import EmailNotifier
from services.notifications.notifier import NotificationFailed
from shared.config import Settings
from shared.logging import get_logger
from shared.store.accounts import OneTimeToken, TokenPurpose

log = get_logger("solewatch.authn")

INVITE_TTL_S = 72 * 3600
RESET_TTL_S = 3600
_TTL: dict[TokenPurpose, int] = {"invite": INVITE_TTL_S, "reset": RESET_TTL_S}
_PAGE: dict[TokenPurpose, str] = {"invite": "accept-invite", "reset": "reset-password"}


def hash_link_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class LinkToken:
    """A new link: the token (for the email, never stored) and what the store keeps."""

    token: str
    stored: OneTimeToken

    @classmethod
    def new(cls, purpose: TokenPurpose, now: float | None = None) -> LinkToken:
        token = secrets.token_urlsafe(32)
        expires_at = (time.time() if now is None else now) + _TTL[purpose]
        return cls(token, OneTimeToken(hash_link_token(token), expires_at))


def public_base(settings: Settings) -> str:
    """Where the dashboard is reached from outside: SOLEWATCH_PUBLIC_URL, else this machine's HTTP port."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://localhost:{settings.http_port}"


def link(settings: Settings, purpose: TokenPurpose, token: str) -> str:
    return f"{public_base(settings)}/#/{_PAGE[purpose]}?token={token}"


def invitation_text(*, url: str, inviter: str, tenant: str, role: str) -> str:
    return (
        f"{inviter} invites you to join {tenant} on solewatch as {role}.\n\n"
        f"Choose your password here (the link works once, for 72 hours):\n{url}\n\n"
        "If you did not expect this, ignore this email.\n"
    )


def reset_text(*, url: str) -> str:
    return (
        "Someone asked to reset the password of your solewatch account.\n\n"
        f"Choose a new password here (the link works once, for 1 hour):\n{url}\n\n"
        "If it was not you, ignore this email: your password stays as it is.\n"
    )


async def send(settings: Settings, *, to: str, subject: str, text: str) -> bool:
    """Send an account email; False when there is no SMTP server or it did not take the message."""
    if not settings.smtp_host:
        log.info("account_email_not_sent", reason="no SOLEWATCH_SMTP_HOST", subject=subject)
        return False
    sender = EmailNotifier(settings)
    try:
        await sender.deliver(sender.plain_message(to=to, subject=subject, text=text), to)
    except NotificationFailed as exc:
        log.warning("account_email_failed", subject=subject, error=str(exc))
        return False
    return True
