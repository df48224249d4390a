"""User sessions: short-lived signed access tokens and revocable refresh tokens.

An access token is an HS256 JWT any service can check with the secret alone.
A refresh token is an opaque random string; the cache holds (under its
SHA-256, never the token itself):

    refresh:<sha256>        {"user_id", "session_id", "started"}  until used, or refresh_token_ttl
    session:<sid>           {"user_id", "refresh": <sha256>}  the session's one live refresh token
    refresh-used:<sha256>   <sid>                             a rotated token: showing it again revokes <sid>
    session-revoked:<sid>   1                                 access tokens of <sid> are refused (access_token_ttl)
    user-revoked:<uid>      {"before", "keep"}                every session of the user started before `before`
                                                              is over, except `keep` (refresh_token_ttl)

A user's sessions are not listed anywhere: disabling a user or changing a
password marks the time instead, and each check compares it with the
session's start (the `sst` claim, the refresh record's `started`). One key per
user, whatever the number of sessions, and each process sees it as soon as
the shared cache does.

Each refresh rotates: the token shown is spent and a new pair is issued in the
same session. A spent token shown again means it leaked (or the client raced
itself): the whole session is revoked.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson

from shared.cache import Cache
from shared.config import Settings, SettingsError
from shared.logging import get_logger
from shared.store.accounts import ROLES, AccountStore, Role, User

log = get_logger("solewatch.authn")

ALGORITHM = "HS256"
AUDIENCE = "solewatch"
MIN_SECRET_LENGTH = 32
SECRET_FILE = "jwt-secret"
# Revocation outlives the access tokens it covers by this much, for clocks of
# other processes running a little behind.
_CLOCK_MARGIN_S = 60

# Every key of the table above (services/authn/state.py keeps them across restarts).
KEY_PREFIXES = ("refresh:", "session:", "refresh-used:", "session-revoked:", "user-revoked:")

_generated_secrets: dict[Path, str] = {}


class InvalidToken(Exception):
    """A token is malformed, forged, expired or revoked."""


# -- the signing secret ------------------------------------------------------------------


def signing_secret(settings: Settings) -> str:
    """The HS256 key; call it at start-up so a missing secret stops the process there.

    Raises SettingsError when the configured secret is short, or absent in
    production. In development an absent secret is generated once and kept in
    `<data_dir>/jwt-secret` (mode 0600), so tokens survive restarts.
    """
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value()
        if len(secret) < MIN_SECRET_LENGTH:
            raise SettingsError(f"SOLEWATCH_JWT_SECRET needs at least {MIN_SECRET_LENGTH} characters")
        return secret
    if settings.environment == "production":
        raise SettingsError(
            f"SOLEWATCH_JWT_SECRET is required in production (at least {MIN_SECRET_LENGTH} random characters)"
        )
    path = (settings.data_dir / SECRET_FILE).resolve()
    generated = _generated_secrets.get(path)
    if generated is None:
        generated = _generated_secrets[path] = _load_or_create_secret(path)
    return generated


def _load_or_create_secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside then linked into place: another process starting at the
        # same moment sees either no file or a whole one, and one of us wins.
        scratch = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(scratch, path)
                log.info("jwt_secret_generated", path=str(path))
            except FileExistsError:
                pass
        finally:
            scratch.unlink()
    secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise SettingsError(f"{path} holds no usable JWT secret; delete it to have a new one generated")
    return secret


def _secret(settings_or_secret: Settings | str) -> str:
    return settings_or_secret if isinstance(settings_or_secret, str) else signing_secret(settings_or_secret)


# -- access tokens -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    tenant_id: int
    role: Role
    session_id: str
    email: str
    platform_admin: bool
    issued_at: int
    expires_at: int
    token_id: str
    session_started: float


def issue_access_token(
    settings: Settings, *, user: User, session_id: str, session_started: float | None = None, now: float | None = None
) -> str:
    """A signed access token for the user in that session, valid `access_token_ttl` seconds."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": str(user.id),
        "tid": user.tenant_id,
        "role": user.role,
        "sid": session_id,
        "email": user.email,
        "padm": user.platform_admin,
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + settings.access_token_ttl,
        "jti": secrets.token_urlsafe(12),
        "sst": issued if session_started is None else session_started,
    }
    return jwt.encode(claims, signing_secret(settings), algorithm=ALGORITHM)


def decode_access_token(settings_or_secret: Settings | str, token: str) -> AccessClaims:
    """Check an access token's signature and expiry; its claims, or InvalidToken.

    It does not know about revoked sessions: `verify_access_token` also asks the cache.
    """
    try:
        claims = jwt.decode(
            token,
            _secret(settings_or_secret),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "exp", "iat", "aud", "jti"]},
        )
        role = claims["role"]
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        return AccessClaims(
            user_id=int(claims["sub"]),
            tenant_id=int(claims["tid"]),
            role=role,
            session_id=str(claims["sid"]),
            email=str(claims["email"]),
            platform_admin=bool(claims.get("padm", False)),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
            token_id=str(claims["jti"]),
            session_started=float(claims.get("sst", claims["iat"])),
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token expired") from exc
    except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("invalid token") from exc


async def verify_access_token(settings: Settings, cache: Cache, token: str) -> AccessClaims:
    """decode_access_token, and refuse tokens of a revoked (logged out) session."""
    claims = decode_access_token(settings, token)
    if await session_revoked(cache, claims.session_id) or await user_session_revoked(
        cache, claims.user_id, claims.session_id, claims.session_started
    ):
        raise InvalidToken("session revoked")
    return claims


# -- sessions and refresh tokens ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token is valid


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _get_json(cache: Cache, key: str) -> dict[str, Any] | None:
    raw = await cache.get(key)
    return None if raw is None else orjson.loads(raw)


async def _issue_pair(settings: Settings, cache: Cache, user: User, session_id: str, started: float) -> TokenPair:
    refresh_token = secrets.token_urlsafe(32)
    digest = _digest(refresh_token)
    ttl = settings.refresh_token_ttl
    record = {"user_id": user.id, "session_id": session_id, "started": started}
    await cache.set(f"refresh:{digest}", orjson.dumps(record), ttl=ttl)
    await cache.set(f"session:{session_id}", orjson.dumps({"user_id": user.id, "refresh": digest}), ttl=ttl)
    access_token = issue_access_token(settings, user=user, session_id=session_id, session_started=started)
    return TokenPair(access_token, refresh_token, settings.access_token_ttl)


async def start_session(settings: Settings, cache: Cache, user: User) -> TokenPair:
    """A new session for a user who just proved who they are."""
    return await _issue_pair(settings, cache, user, secrets.token_urlsafe(16), time.time())


async def refresh_session(settings: Settings, cache: Cache, store: AccountStore, refresh_token: str) -> TokenPair:
    """Spend a refresh token for a new pair in the same session; InvalidToken when it cannot be."""
    digest = _digest(refresh_token)
    record = await _get_json(cache, f"refresh:{digest}")
    if record is None:
        spent_in = await cache.get(f"refresh-used:{digest}")
        if spent_in is not None:
            await _revoke_after_reuse(settings, cache, spent_in.decode())
        raise InvalidToken("unknown, expired or revoked refresh token")
    session_id = str(record["session_id"])
    session = await _get_json(cache, f"session:{session_id}")
    if session is None or session["refresh"] != digest:
        await _revoke_after_reuse(settings, cache, session_id)
        raise InvalidToken("refresh token no longer valid")
    # The claim that makes rotation race-free: of two requests showing the same
    # token, exactly one sets the marker; the other is a reuse.
    if not await cache.set_if_absent(f"refresh-used:{digest}", session_id.encode(), ttl=settings.refresh_token_ttl):
        await _revoke_after_reuse(settings, cache, session_id)
        raise InvalidToken("refresh token already used")
    await cache.delete(f"refresh:{digest}")
    user = await store.user(int(record["user_id"]))
    started = float(record.get("started", 0.0))
    if user is None or user.status != "active":
        await revoke_session(settings, cache, session_id)
        raise InvalidToken("the account no longer exists or is disabled")
    if await user_session_revoked(cache, user.id, session_id, started):
        await revoke_session(settings, cache, session_id)
        raise InvalidToken("session revoked")
    pair = await _issue_pair(settings, cache, user, session_id, started)  # role changes take effect here
    if await session_revoked(cache, session_id):  # a logout landed while we were rotating
        await revoke_session(settings, cache, session_id)
        raise InvalidToken("session revoked")
    return pair


async def _revoke_after_reuse(settings: Settings, cache: Cache, session_id: str) -> None:
    log.warning("refresh_token_reused", session_id=session_id)
    await revoke_session(settings, cache, session_id)


async def revoke_session(settings: Settings, cache: Cache, session_id: str) -> None:
    """End a session: its access tokens are refused at once, its refresh token is void."""
    # First the mark every request checks, so that a failure further on still
    # leaves the access tokens dead.
    await cache.set(f"session-revoked:{session_id}", b"1", ttl=settings.access_token_ttl + _CLOCK_MARGIN_S)
    session = await _get_json(cache, f"session:{session_id}")
    if session is not None:
        await cache.delete(f"refresh:{session['refresh']}")
    await cache.delete(f"session:{session_id}")


async def session_revoked(cache: Cache, session_id: str) -> bool:
    return await cache.get(f"session-revoked:{session_id}") is not None


async def revoke_user_sessions(
    settings: Settings, cache: Cache, user_id: int, *, keep_session: str | None = None
) -> None:
    """End every session the user has started so far (but `keep_session`): access tokens refused at once,
    refresh tokens void. Sessions started afterwards are not affected."""
    mark = {"before": time.time(), "keep": keep_session}
    await cache.set(f"user-revoked:{user_id}", orjson.dumps(mark), ttl=settings.refresh_token_ttl + _CLOCK_MARGIN_S)
    log.info("user_sessions_revoked", user_id=user_id, kept=keep_session is not None)


async def user_revocation(cache: Cache, user_id: int) -> dict[str, Any] | None:
    """The user's latest "sign out everywhere" mark (`revoke_user_sessions`), or None."""
    return await _get_json(cache, f"user-revoked:{user_id}")


def revoked_by(mark: dict[str, Any] | None, session_id: str, session_started: float) -> bool:
    """Whether that mark ends that session: it started before the mark and is not the one kept."""
    return mark is not None and session_started < float(mark["before"]) and session_id != mark.get("keep")


async def user_session_revoked(cache: Cache, user_id: int, session_id: str, session_started: float) -> bool:
    return revoked_by(await user_revocation(cache, user_id), session_id, session_started)
