"""SQLite adapter, account half: tenants, users, API keys (a mixin of SqliteStore).

Devices, alerts and the rest reference `tenants`, created here first.
Emails are stored lowercased, so the UNIQUE index makes them unique whatever
their case.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from shared.store.accounts import ApiKey, Role, Tenant, TenantExists, User, UserExists

T = TypeVar("T")

_USER_COLUMNS = "id, tenant_id, email, password_hash, role, platform_admin, created_at"
_API_KEY_COLUMNS = "id, tenant_id, name, prefix, key_hash, role, created_at, revoked_at IS NOT NULL"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _tenant(row: tuple[Any, ...] | None) -> Tenant | None:
    return None if row is None else Tenant(*row)


def _user(row: tuple[Any, ...] | None) -> User | None:
    if row is None:
        return None
    id_, tenant_id, email, password_hash, role, platform_admin, created_at = row
    return User(id_, tenant_id, email, password_hash, role, bool(platform_admin), created_at)


def _api_key(row: tuple[Any, ...]) -> ApiKey:
    id_, tenant_id, name, prefix, key_hash, role, created_at, revoked = row
    return ApiKey(id_, tenant_id, name, prefix, key_hash, role, created_at, bool(revoked))


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
    platform_admin INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS users_by_tenant ON users(tenant_id);
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    name TEXT NOT NULL, prefix TEXT NOT NULL, key_hash BLOB NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'supervisor', 'viewer')),
    created_at REAL NOT NULL, revoked_at REAL);
CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys(tenant_id);
"""

    if TYPE_CHECKING:  # provided by SqliteStore

        async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    # -- tenants -----------------------------------------------------------------------

    async def create_tenant(self, name: str) -> Tenant:
        def run(c: sqlite3.Connection) -> Tenant:
            now = time.time()
            try:
                cursor = c.execute("INSERT INTO tenants(name, created_at) VALUES (?, ?)", (name, now))
            except sqlite3.IntegrityError as exc:
                raise TenantExists(name) from exc
            return Tenant(int(cursor.lastrowid or 0), name, now)

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
        self, *, tenant_id: int, email: str, password_hash: str, role: Role, platform_admin: bool = False
    ) -> User:
        email = normalize_email(email)

        def run(c: sqlite3.Connection) -> User:
            now = time.time()
            if c.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is None:
                raise ValueError(f"no tenant with id {tenant_id}")
            try:
                cursor = c.execute(
                    "INSERT INTO users(tenant_id, email, password_hash, role, platform_admin, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (tenant_id, email, password_hash, role, int(platform_admin), now),
                )
            except sqlite3.IntegrityError as exc:
                if "users.email" in str(exc):
                    raise UserExists(email) from exc
                raise ValueError(f"invalid user: {exc}") from exc  # e.g. a role outside the CHECK
            return User(int(cursor.lastrowid or 0), tenant_id, email, password_hash, role, platform_admin, now)

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

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._write(
            lambda c: c.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))
        )

    async def count_users(self) -> int:
        return await self._read(lambda c: int(c.execute("SELECT count(*) FROM users").fetchone()[0]))

    # -- API keys ------------------------------------------------------------------------

    async def create_api_key(self, *, tenant_id: int, name: str, prefix: str, key_hash: bytes, role: Role) -> ApiKey:
        def run(c: sqlite3.Connection) -> ApiKey:
            now = time.time()
            cursor = c.execute(
                "INSERT INTO api_keys(tenant_id, name, prefix, key_hash, role, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (tenant_id, name, prefix, key_hash, role, now),
            )
            return ApiKey(int(cursor.lastrowid or 0), tenant_id, name, prefix, key_hash, role, now, False)

        return await self._write(run)

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        return await self._read(
            lambda c: _api_key_or_none(
                c.execute(f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone()
            )
        )

    async def api_keys(self, tenant_id: int) -> list[ApiKey]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = ? ORDER BY id", (tenant_id,)
            ).fetchall()
        )
        return [_api_key(row) for row in rows]

    async def revoke_api_key(self, tenant_id: int, key_id: int) -> bool:
        """Revoke a tenant's key; True when the tenant has that key (revoking twice is harmless)."""

        def run(c: sqlite3.Connection) -> bool:
            c.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL",
                (time.time(), key_id, tenant_id),
            )
            found = c.execute("SELECT 1 FROM api_keys WHERE id = ? AND tenant_id = ?", (key_id, tenant_id)).fetchone()
            return found is not None

        return await self._write(run)
