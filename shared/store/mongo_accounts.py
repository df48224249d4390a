"""MongoDB adapter, account half: tenants, users, API keys (a mixin of MongoStore).

Emails are stored lowercased, so the unique index makes them unique whatever
their case. Each account write is a single document, so atomic on its own.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError

from shared.store.accounts import ROLES, ApiKey, Role, Tenant, TenantExists, User, UserExists
from shared.store.sqlite_accounts import normalize_email

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def _tenant(doc: Document | None) -> Tenant | None:
    return Tenant(doc["_id"], doc["name"], doc["created_at"]) if doc else None


def _user(doc: Document | None) -> User | None:
    if doc is None:
        return None
    return User(
        doc["_id"],
        doc["tenant_id"],
        doc["email"],
        doc["password_hash"],
        doc["role"],
        doc["platform_admin"],
        doc["created_at"],
    )


def _api_key(doc: Document) -> ApiKey:
    return ApiKey(
        doc["_id"],
        doc["tenant_id"],
        doc["name"],
        doc["prefix"],
        doc["key_hash"],
        doc["role"],
        doc["created_at"],
        "revoked_at" in doc,
    )


def _check_role(role: str) -> None:
    # What SQLite's CHECK constraint refuses.
    if role not in ROLES:
        raise ValueError(f"invalid role {role!r}")


class MongoAccounts:
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = {
        "tenants": [IndexModel("name", name="tenants_by_name", unique=True)],
        "users": [
            IndexModel("email", name="users_by_email", unique=True),
            IndexModel("tenant_id", name="users_by_tenant"),
        ],
        "api_keys": [
            IndexModel("key_hash", name="api_keys_by_hash", unique=True),
            IndexModel([("tenant_id", 1), ("_id", 1)], name="api_keys_by_tenant"),
        ],
    }

    if TYPE_CHECKING:  # provided by MongoStore

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...

    # -- tenants -----------------------------------------------------------------------

    async def create_tenant(self, name: str) -> Tenant:
        async with self._write() as db:
            tenant = Tenant(await self._new_id("tenants"), name, time.time())
            try:
                await db.tenants.insert_one({"_id": tenant.id, "name": name, "created_at": tenant.created_at})
            except DuplicateKeyError as exc:
                raise TenantExists(name) from exc
            return tenant

    async def tenant(self, tenant_id: int) -> Tenant | None:
        async with self._read() as db:
            return _tenant(await db.tenants.find_one({"_id": tenant_id}))

    async def tenant_by_name(self, name: str) -> Tenant | None:
        async with self._read() as db:
            return _tenant(await db.tenants.find_one({"name": name}))

    async def tenants(self) -> list[Tenant]:
        async with self._read() as db:
            docs = await db.tenants.find().sort("_id").to_list(None)
        return [Tenant(doc["_id"], doc["name"], doc["created_at"]) for doc in docs]

    async def ensure_tenant(self, name: str) -> int:
        tenant = await self.tenant_by_name(name)
        if tenant is None:
            try:
                tenant = await self.create_tenant(name)
            except TenantExists:  # created meanwhile by another caller
                tenant = await self.tenant_by_name(name)
        assert tenant is not None, "tenants are never deleted"
        return tenant.id

    # -- users ---------------------------------------------------------------------------

    async def create_user(
        self, *, tenant_id: int, email: str, password_hash: str, role: Role, platform_admin: bool = False
    ) -> User:
        email = normalize_email(email)
        _check_role(role)
        async with self._write() as db:
            if await db.tenants.find_one({"_id": tenant_id}, {"_id": 1}) is None:
                raise ValueError(f"no tenant with id {tenant_id}")
            user = User(await self._new_id("users"), tenant_id, email, password_hash, role, platform_admin, time.time())
            try:
                await db.users.insert_one(
                    {
                        "_id": user.id,
                        "tenant_id": tenant_id,
                        "email": email,
                        "password_hash": password_hash,
                        "role": role,
                        "platform_admin": platform_admin,
                        "created_at": user.created_at,
                    }
                )
            except DuplicateKeyError as exc:
                raise UserExists(email) from exc
            return user

    async def user(self, user_id: int) -> User | None:
        async with self._read() as db:
            return _user(await db.users.find_one({"_id": user_id}))

    async def user_by_email(self, email: str) -> User | None:
        async with self._read() as db:
            return _user(await db.users.find_one({"email": normalize_email(email)}))

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        async with self._write() as db:
            await db.users.update_one({"_id": user_id}, {"$set": {"password_hash": password_hash}})

    async def count_users(self) -> int:
        async with self._read() as db:
            return await db.users.count_documents({})

    # -- API keys ------------------------------------------------------------------------

    async def create_api_key(self, *, tenant_id: int, name: str, prefix: str, key_hash: bytes, role: Role) -> ApiKey:
        _check_role(role)
        async with self._write() as db:
            key = ApiKey(await self._new_id("api_keys"), tenant_id, name, prefix, key_hash, role, time.time(), False)
            # No revoked_at until revoked (see revoke_api_key).
            await db.api_keys.insert_one(
                {
                    "_id": key.id,
                    "tenant_id": tenant_id,
                    "name": name,
                    "prefix": prefix,
                    "key_hash": key_hash,
                    "role": role,
                    "created_at": key.created_at,
                }
            )
            return key

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        async with self._read() as db:
            doc = await db.api_keys.find_one({"key_hash": key_hash})
        return _api_key(doc) if doc else None

    async def api_keys(self, tenant_id: int) -> list[ApiKey]:
        async with self._read() as db:
            docs = await db.api_keys.find({"tenant_id": tenant_id}).sort("_id").to_list(None)
        return [_api_key(doc) for doc in docs]

    async def revoke_api_key(self, tenant_id: int, key_id: int) -> bool:
        """Revoke a tenant's key; True when the tenant has that key (revoking twice is harmless)."""
        async with self._write() as db:
            # $min sets a missing revoked_at and keeps an earlier one: the first revocation stands.
            result = await db.api_keys.update_one(
                {"_id": key_id, "tenant_id": tenant_id}, {"$min": {"revoked_at": time.time()}}
            )
            return result.matched_count == 1
