"""Access tokens (signature, expiry, claims), the signing secret, and refresh-token rotation."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import stat
import time

import jwt
import pytest

from services.authn import tokens
from services.authn.tokens import (
    InvalidToken,
    decode_access_token,
    issue_access_token,
    refresh_session,
    revoke_session,
    revoke_user_sessions,
    signing_secret,
    start_session,
    verify_access_token,
)
from shared.cache.memory import MemoryCache
from shared.config import Settings, SettingsError
from shared.store.accounts import User

SECRET = "s" * 40
USER = User(
    id=7,
    tenant_id=3,
    email="ana@example.com",
    password_hash="x",
    role="supervisor",
    platform_admin=False,
    created_at=0.0,
)


@pytest.fixture(autouse=True)
def no_solewatch_environment(monkeypatch):
    for name in [name for name in os.environ if name.startswith("SOLEWATCH_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, jwt_secret=SECRET)


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _payload(token: str) -> dict:
    part = _segments(token)[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_claims_round_trip(settings):
    token = issue_access_token(settings, user=USER, session_id="sess-1")
    claims = decode_access_token(settings, token)
    assert (claims.user_id, claims.tenant_id, claims.role, claims.session_id) == (7, 3, "supervisor", "sess-1")
    assert claims.email == "ana@example.com" and claims.platform_admin is False
    assert claims.expires_at - claims.issued_at == settings.access_token_ttl == 900
    raw = _payload(token)
    assert raw["sub"] == "7" and raw["tid"] == 3 and raw["sid"] == "sess-1" and raw["jti"]
    # A plain secret works as well as the settings (for the Socket.IO server).
    assert decode_access_token(SECRET, token) == claims


def test_each_token_has_its_own_id(settings):
    first = decode_access_token(settings, issue_access_token(settings, user=USER, session_id="s"))
    second = decode_access_token(settings, issue_access_token(settings, user=USER, session_id="s"))
    assert first.token_id != second.token_id


def test_expired_token_is_refused(settings):
    token = issue_access_token(settings, user=USER, session_id="s", now=time.time() - 901)
    with pytest.raises(InvalidToken, match="expired"):
        decode_access_token(settings, token)
    fresh = issue_access_token(settings, user=USER, session_id="s", now=time.time() - 880)
    assert decode_access_token(settings, fresh).user_id == 7


def test_tampered_payload_is_refused(settings):
    token = issue_access_token(settings, user=USER, session_id="s")
    header, _, signature = _segments(token)
    promoted = _b64({**_payload(token), "role": "admin", "tid": 1})
    with pytest.raises(InvalidToken):
        decode_access_token(settings, f"{header}.{promoted}.{signature}")


def test_tampered_signature_is_refused(settings):
    token = issue_access_token(settings, user=USER, session_id="s")
    header, payload, signature = _segments(token)
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(InvalidToken):
        decode_access_token(settings, f"{header}.{payload}.{flipped}")


def test_wrong_secret_is_refused(settings):
    token = issue_access_token(settings, user=USER, session_id="s")
    with pytest.raises(InvalidToken):
        decode_access_token("another secret of at least 32 chars!", token)


def test_unsigned_and_foreign_tokens_are_refused(settings):
    claims = {**_payload(issue_access_token(settings, user=USER, session_id="s"))}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    for token in (unsigned, "junk", "a.b.c", "", jwt.encode({**claims, "aud": "other"}, SECRET, algorithm="HS256")):
        with pytest.raises(InvalidToken):
            decode_access_token(settings, token)


@pytest.mark.parametrize("missing", ["sid", "tid", "role", "exp", "sub"])
def test_token_without_a_needed_claim_is_refused(settings, missing):
    claims = _payload(issue_access_token(settings, user=USER, session_id="s"))
    del claims[missing]
    with pytest.raises(InvalidToken):
        decode_access_token(settings, jwt.encode(claims, SECRET, algorithm="HS256"))


def test_unknown_role_is_refused(settings):
    claims = {**_payload(issue_access_token(settings, user=USER, session_id="s")), "role": "root"}
    with pytest.raises(InvalidToken):
        decode_access_token(settings, jwt.encode(claims, SECRET, algorithm="HS256"))


# -- the signing secret --------------------------------------------------------------------


def test_development_secret_is_generated_once_and_private(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data")
    secret = signing_secret(settings)
    path = tmp_path / "data" / "jwt-secret"
    assert len(secret) >= 32 and path.read_text().strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = issue_access_token(settings, user=USER, session_id="s")
    # A restart (no memory of the secret) reads the same file: old tokens still verify.
    monkeypatch.setattr(tokens, "_generated_secrets", {})
    assert signing_secret(Settings(data_dir=tmp_path / "data")) == secret
    assert decode_access_token(Settings(data_dir=tmp_path / "data"), token).user_id == 7
    assert list((tmp_path / "data").iterdir()) == [path]  # no scratch file left behind


def test_production_refuses_to_run_without_a_real_secret(tmp_path):
    with pytest.raises(SettingsError, match="required in production"):
        signing_secret(Settings(data_dir=tmp_path, environment="production"))
    with pytest.raises(SettingsError, match="at least 32"):
        signing_secret(Settings(data_dir=tmp_path, environment="production", jwt_secret="too short"))
    assert not (tmp_path / "jwt-secret").exists()
    assert signing_secret(Settings(data_dir=tmp_path, environment="production", jwt_secret=SECRET)) == SECRET


def test_secret_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SOLEWATCH_JWT_SECRET", SECRET)
    assert signing_secret(Settings(data_dir=tmp_path)) == SECRET
    assert not (tmp_path / "jwt-secret").exists()


# -- sessions ----------------------------------------------------------------------------


class _Users:
    async def user(self, user_id: int) -> User | None:
        return USER if user_id == USER.id else None


async def test_rotation_spends_the_refresh_token(settings):
    cache = MemoryCache()
    first = await start_session(settings, cache, USER)
    second = await refresh_session(settings, cache, _Users(), first.refresh_token)
    assert second.refresh_token != first.refresh_token
    claims = await verify_access_token(settings, cache, second.access_token)
    assert claims.session_id == decode_access_token(settings, first.access_token).session_id
    third = await refresh_session(settings, cache, _Users(), second.refresh_token)
    await verify_access_token(settings, cache, third.access_token)


class YieldingCache(MemoryCache):
    """A cache that lets other tasks run at every call, as a networked one (Redis) would."""

    async def get(self, key):
        await asyncio.sleep(0)
        return await super().get(key)

    async def set_if_absent(self, key, value, *, ttl=None):
        await asyncio.sleep(0)
        return await super().set_if_absent(key, value, ttl=ttl)

    async def delete(self, key):
        await asyncio.sleep(0)
        await super().delete(key)


@pytest.mark.parametrize("cache_type", [MemoryCache, YieldingCache])
async def test_concurrent_use_of_one_refresh_token_revokes_the_session(settings, cache_type):
    cache = cache_type()
    pair = await start_session(settings, cache, USER)
    results = await asyncio.gather(
        *(refresh_session(settings, cache, _Users(), pair.refresh_token) for _ in range(2)),
        return_exceptions=True,
    )
    assert sum(isinstance(result, InvalidToken) for result in results) >= 1
    for result in results:
        if not isinstance(result, Exception):  # the winner's pair died with the session
            with pytest.raises(InvalidToken):
                await verify_access_token(settings, cache, result.access_token)
            with pytest.raises(InvalidToken):
                await refresh_session(settings, cache, _Users(), result.refresh_token)


async def test_revoked_session_refuses_access_and_refresh_even_after_the_revocation_mark_expires(settings):
    cache = MemoryCache()
    now = [1000.0]
    cache._clock = lambda: now[0]
    pair = await start_session(settings, cache, USER)
    await revoke_session(settings, cache, decode_access_token(settings, pair.access_token).session_id)
    with pytest.raises(InvalidToken, match="revoked"):
        await verify_access_token(settings, cache, pair.access_token)
    now[0] += settings.access_token_ttl + 120  # the mark is gone, and so is every access token it covered
    with pytest.raises(InvalidToken):
        await refresh_session(settings, cache, _Users(), pair.refresh_token)


async def test_refresh_token_expires(settings):
    cache = MemoryCache()
    now = [1000.0]
    cache._clock = lambda: now[0]
    pair = await start_session(settings, cache, USER)
    now[0] += settings.refresh_token_ttl + 1
    with pytest.raises(InvalidToken):
        await refresh_session(settings, cache, _Users(), pair.refresh_token)


async def test_revoking_a_users_sessions_spares_the_kept_one_and_later_ones(settings):
    cache = MemoryCache()
    kept, other = await start_session(settings, cache, USER), await start_session(settings, cache, USER)
    kept_sid = decode_access_token(settings, kept.access_token).session_id
    await revoke_user_sessions(settings, cache, USER.id, keep_session=kept_sid)

    await verify_access_token(settings, cache, kept.access_token)
    with pytest.raises(InvalidToken):
        await verify_access_token(settings, cache, other.access_token)
    with pytest.raises(InvalidToken):
        await refresh_session(settings, cache, _Users(), other.refresh_token)
    refreshed = await refresh_session(settings, cache, _Users(), kept.refresh_token)  # the kept session goes on
    await verify_access_token(settings, cache, refreshed.access_token)

    later = await start_session(settings, cache, USER)  # signing in again works at once
    await verify_access_token(settings, cache, later.access_token)
    await revoke_user_sessions(settings, cache, USER.id)  # now every session so far, the kept one too
    for pair in (refreshed, later):
        with pytest.raises(InvalidToken):
            await verify_access_token(settings, cache, pair.access_token)


async def test_a_disabled_user_cannot_refresh(settings):
    cache = MemoryCache()
    pair = await start_session(settings, cache, USER)

    class DisabledUsers:
        async def user(self, user_id: int) -> User | None:
            return dataclasses.replace(USER, status="disabled")

    with pytest.raises(InvalidToken):
        await refresh_session(settings, cache, DisabledUsers(), pair.refresh_token)
