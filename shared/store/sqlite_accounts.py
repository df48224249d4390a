"""SQLite adapter, account half: tenants, users, API keys (a mixin of SqliteStore).

Devices, alerts and the rest reference `tenants`, created here first.
Emails are stored lowercased, so the UNIQUE index makes them unique whatever
their case.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from shared.store.accounts import (
    ApiKey,
    LastAdmin,
    OneTimeToken,
    Role,
    Tenant,
    TenantExists,
    TokenPurpose,
    User,
    UserExists,
    UserStatus,
    apply_user_change,
)
from shared.store.audit import AuditEntry
from shared.store.sqlite_audit import insert_audit

T = TypeVar("T")

_USER_COLUMNS = "id, tenant_id, email, password_hash, role, platform_admin, created_at, name, status, last_login_at"
_API_KEY_COLUMNS = "id, tenant_id, name, prefix, key_hash, role, created_at, revoked_at IS NOT NULL, last_used_at"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _tenant(row: tuple[Any, ...] | None) -> Tenant | None:
    return None if row is None else Tenant(*row)


def _user(row: tuple[Any, ...] | None) -> User | None:
    if row is None:
        return None
    id_, tenant_id, email, password_hash, role, platform_admin, created_at, name, status, last_login_at = row
    return User(
        id_, tenant_id, email, password_hash, role, bool(platform_admin), created_at, name, status, last_login_at
    )


def _api_key(row: tuple[Any, ...]) -> ApiKey:
    id_, tenant_id, name, prefix, key_hash, role, created_at, revoked, last_used_at = row
    return ApiKey(id_, tenant_id, name, prefix, key_hash, role, created_at, bool(revoked), last_used_at)


def _api_key_or_none(row: tuple[Any, ...] | None) -> ApiKey | None:
    return None if row is None else _api_key(row)


class SqliteAccounts:
    SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'supervisor', 'viewer')),
    platform_admin INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'invited', 'disabled')),
    last_login_at REAL,
    invite_hash BLOB UNIQUE, invite_expires_at REAL,
    reset_hash BLOB UNIQUE, reset_expires_at REAL);
CREATE INDEX IF NOT EXISTS users_by_tenant ON users(tenant_id, id);
-- A user's choices about what solewatch sends them, one row once they make one (none: the defaults).
-- A table of its own rather than columns of users: CREATE TABLE IF NOT EXISTS brings it to a database
-- made before it, which a new column of users would not reach.
CREATE TABLE IF NOT EXISTS user_preferences (
    user_id INTEGER PRIMARY KEY REFERENCES users(id), weekly_digest INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL, prefix TEXT NOT NULL, key_hash BLOB NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'supervisor', 'viewer')),
    created_at REAL NOT NULL, revoked_at REAL, last_used_at REAL);
CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys(tenant_id);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    # -- tenants -----------------------------------------------------------------------

    async def create_tenant(self, name: str, *, audit: AuditEntry | None = None) -> Tenant:
        def run(c: sqlite3.Connection) -> Tenant:
            now = time.time()
            try:
                cursor = c.execute("INSERT INTO tenants(name, created_at) VALUES (?, ?)", (name, now))
            except sqlite3.IntegrityError as exc:
                raise TenantExists(name) from exc
            tenant = Tenant(int(cursor.lastrowid or 0), name, now)
            if audit is not None:
                insert_audit(c, replace(audit, tenant_id=tenant.id, target_id=str(tenant.id)))
            return tenant

        return await self._write(run)

    async def tenant(self, tenant_id: int) -> Tenant | None:
        return await self._read(
            lambda c: _tenant(
                c.execute("SELECT id, name, created_at FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
            )
        )

    async def tenant_by_name(self, name: str) -> Tenant | None:
        return await self._read(
            lambda c: _tenant(c.execute("SELECT id, name, created_at FROM tenants WHERE name = ?", (name,)).fetchone())
        )

    async def tenants(self) -> list[Tenant]:
        rows = await self._read(lambda c: c.execute("SELECT id, name, created_at FROM tenants ORDER BY id").fetchall())
        return [Tenant(*row) for row in rows]

    async def ensure_tenant(self, name: str) -> int:
        def run(c: sqlite3.Connection) -> int:
            c.execute("INSERT OR IGNORE INTO tenants(name, created_at) VALUES (?, ?)", (name, time.time()))
            return int(c.execute("SELECT id FROM tenants WHERE name = ?", (name,)).fetchone()[0])

        return await self._write(run)

    # -- users ---------------------------------------------------------------------------

    async def create_user(
        self,
        *,
        tenant_id: int,
        email: str,
        password_hash: str,
        role: Role,
        platform_admin: bool = False,
        name: str = "",
        invitation: OneTimeToken | None = None,
        audit: AuditEntry | None = None,
    ) -> User:
        email = normalize_email(email)
        status: UserStatus = "active" if invitation is None else "invited"

        def run(c: sqlite3.Connection) -> User:
            now = time.time()
            if c.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
                raise ValueError(f"no tenant with id {tenant_id}")
            try:
                cursor = c.execute(
                    "INSERT INTO users(tenant_id, email, password_hash, role, platform_admin, created_at, name, status,"
                    " invite_hash, invite_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        tenant_id,
                        email,
                        password_hash,
                        role,
                        int(platform_admin),
                        now,
                        name,
                        status,
                        invitation and invitation.token_hash,
                        invitation and invitation.expires_at,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "users.email" in str(exc):
                    raise UserExists(email) from exc
                raise ValueError(f"invalid user: {exc}") from exc  # e.g. a role outside the CHECK
            user_id = int(cursor.lastrowid or 0)
            insert_audit(c, None if audit is None else replace(audit, target_id=str(user_id)))
            return User(user_id, tenant_id, email, password_hash, role, platform_admin, now, name, status)

        return await self._write(run)

    async def user(self, user_id: int) -> User | None:
        return await self._read(
            lambda c: _user(c.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone())
        )

    async def user_by_email(self, email: str) -> User | None:
        email = normalize_email(email)
        return await self._read(
            lambda c: _user(c.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE email = ?", (email,)).fetchone())
        )

    async def users(self, tenant_id: int, *, after_id: int | None = None, limit: int = 100) -> list[User]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_USER_COLUMNS} FROM users WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
                (tenant_id, after_id or 0, limit),
            ).fetchall()
        )
        return [user for user in map(_user, rows) if user is not None]

    async def update_user(
        self,
        tenant_id: int,
        user_id: int,
        *,
        name: str | None = None,
        role: Role | None = None,
        disabled: bool | None = None,
        audit: AuditEntry | None = None,
    ) -> User | None:
        def run(c: sqlite3.Connection) -> User | None:
            # One writer and BEGIN IMMEDIATE: the admin count below cannot change before we commit.
            user = _user(
                c.execute(
                    f"SELECT {_USER_COLUMNS} FROM users WHERE id = ? AND tenant_id = ?", (user_id, tenant_id)
                ).fetchone()
            )
            if user is None:
                return None
            changed = apply_user_change(user, name=name, role=role, disabled=disabled)
            if user.is_active_admin and not changed.is_active_admin:
                others = c.execute(
                    "SELECT count(*) FROM users WHERE tenant_id = ? AND role = 'admin' AND status = 'active'"
                    " AND id != ?",
                    (tenant_id, user_id),
                ).fetchone()[0]
                if not others:
                    raise LastAdmin(tenant_id)
            c.execute(
                "UPDATE users SET name = ?, role = ?, status = ? WHERE id = ?",
                (changed.name, changed.role, changed.status, user_id),
            )
            insert_audit(c, audit)
            return changed

        return await self._write(run)

    async def weekly_digest(self, user_id: int) -> bool:
        row = await self._read(
            lambda c: c.execute("SELECT weekly_digest FROM user_preferences WHERE user_id = ?", (user_id,)).fetchone()
        )
        return bool(row and row[0])

    async def set_weekly_digest(self, user_id: int, enabled: bool, *, audit: AuditEntry | None = None) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if c.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                return False
            row = c.execute("SELECT weekly_digest FROM user_preferences WHERE user_id = ?", (user_id,)).fetchone()
            if bool(row and row[0]) == enabled:
                return True  # nothing changes: no entry
            c.execute(
                "INSERT INTO user_preferences(user_id, weekly_digest) VALUES (?, ?)"
                " ON CONFLICT(user_id) DO UPDATE SET weekly_digest = excluded.weekly_digest",
                (user_id, int(enabled)),
            )
            insert_audit(c, audit)
            return True

        return await self._write(run)

    async def digest_recipients(self, tenant_id: int) -> list[User]:
        columns = ", ".join(f"u.{column.strip()}" for column in _USER_COLUMNS.split(","))
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {columns} FROM users u JOIN user_preferences p ON p.user_id = u.id"
                " WHERE u.tenant_id = ? AND u.role = 'admin' AND u.status = 'active' AND p.weekly_digest = 1"
                " ORDER BY u.id",
                (tenant_id,),
            ).fetchall()
        )
        return [user for user in map(_user, rows) if user is not None]

    async def set_password_hash(self, user_id: int, password_hash: str, *, audit: AuditEntry | None = None) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE users SET password_hash = ?, reset_hash = NULL, reset_expires_at = NULL WHERE id = ?",
                (password_hash, user_id),
            )
            insert_audit(c, audit)

        await self._write(run)

    async def record_login(self, user_id: int, at: float, *, audit: AuditEntry | None = None) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("UPDATE users SET last_login_at = ? WHERE id = ?", (at, user_id))
            insert_audit(c, audit)

        await self._write(run)

    async def count_users(self) -> int:
        return await self._read(lambda c: int(c.execute("SELECT count(*) FROM users").fetchone()[0]))

    async def set_user_token(
        self, user_id: int, purpose: TokenPurpose, token: OneTimeToken, *, audit: AuditEntry | None = None
    ) -> bool:
        status = "invited" if purpose == "invite" else "active"

        def run(c: sqlite3.Connection) -> bool:
            cursor = c.execute(
                f"UPDATE users SET {purpose}_hash = ?, {purpose}_expires_at = ? WHERE id = ? AND status = ?",
                (token.token_hash, token.expires_at, user_id, status),
            )
            if cursor.rowcount != 1:
                return False
            insert_audit(c, audit)
            return True

        return await self._write(run)

    async def user_by_token(self, purpose: TokenPurpose, token_hash: bytes, now: float) -> User | None:
        sql = f"SELECT {_USER_COLUMNS} FROM users WHERE {purpose}_hash = ? AND {purpose}_expires_at > ?"
        return await self._read(lambda c: _user(c.execute(sql, (token_hash, now)).fetchone()))

    async def redeem_user_token(
        self,
        user_id: int,
        purpose: TokenPurpose,
        token_hash: bytes,
        now: float,
        password_hash: str,
        *,
        audit: AuditEntry | None = None,
    ) -> bool:
        status = "invited" if purpose == "invite" else "active"

        def run(c: sqlite3.Connection) -> bool:
            cursor = c.execute(
                f"UPDATE users SET password_hash = ?, status = 'active', {purpose}_hash = NULL,"
                f" {purpose}_expires_at = NULL WHERE id = ? AND status = ? AND {purpose}_hash = ?"
                f" AND {purpose}_expires_at > ?",
                (password_hash, user_id, status, token_hash, now),
            )
            if cursor.rowcount != 1:
                return False
            insert_audit(c, audit)
            return True

        return await self._write(run)

    # -- API keys ------------------------------------------------------------------------

    async def create_api_key(
        self, *, tenant_id: int, name: str, prefix: str, key_hash: bytes, role: Role, audit: AuditEntry | None = None
    ) -> ApiKey:
        def run(c: sqlite3.Connection) -> ApiKey:
            now = time.time()
            cursor = c.execute(
                "INSERT INTO api_keys(tenant_id, name, prefix, key_hash, role, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (tenant_id, name, prefix, key_hash, role, now),
            )
            key = ApiKey(int(cursor.lastrowid or 0), tenant_id, name, prefix, key_hash, role, now, False)
            insert_audit(c, None if audit is None else replace(audit, target_id=str(key.id)))
            return key

        return await self._write(run)

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        return await self._read(
            lambda c: _api_key_or_none(
                c.execute(f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
            )
        )

    async def api_keys(self, tenant_id: int, *, after_id: int | None = None, limit: int | None = None) -> list[ApiKey]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
                (tenant_id, after_id or 0, -1 if limit is None else limit),
            ).fetchall()
        )
        return [_api_key(row) for row in rows]

    async def record_api_key_use(self, key_id: int, at: float) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                (at, key_id, at),
            )
        )

    async def revoke_api_key(self, tenant_id: int, key_id: int, *, audit: AuditEntry | None = None) -> bool:
        """Revoke a tenant's key; True when the tenant has that key (revoking twice is harmless)."""

        def run(c: sqlite3.Connection) -> bool:
            cursor = c.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL",
                (time.time(), key_id, tenant_id),
            )
            if cursor.rowcount == 1:
                insert_audit(c, audit)
            found = c.execute("SELECT 1 FROM api_keys WHERE id = ? AND tenant_id = ?", (key_id, tenant_id)).fetchone()
            return found is not None

        return await self._write(run)
