"""MongoDB adapter, account half: tenants, users, API keys (a mixin of MongoStore).

Emails are stored lowercased, so the unique index makes them unique whatever
their case. Each account write is a single document, so atomic on its own,
with its audit entry carried in that document (mongo_audit.py). Single-use
tokens live in the user's document (`invite`, `reset`: hash and expiry) and
are spent by one conditional update: of racing callers, one matches.

The one check spanning documents, "a tenant keeps an active admin", is made
under a short lease on the tenant's document (`admin_lock`), taken by every
change that could remove an active admin; a process dying while holding it
blocks those changes for at most ADMIN_LOCK_S.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from pymongo import IndexModel
from pymongo.errors import DuplicateKeyError

from shared.store.accounts import (
    ROLES,
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
from shared.store.mongo_audit import with_audit
from shared.store.port import StoreUnavailable
from shared.store.sqlite_accounts import normalize_email

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]

ADMIN_LOCK_S = 10.0
_ADMIN_LOCK_RETRY_S = 0.02


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
        doc.get("name", ""),
        doc.get("status", "active"),
        doc.get("last_login_at"),
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
        doc.get("last_used_at"),
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
            IndexModel([("tenant_id", 1), ("_id", 1)], name="users_by_tenant"),
            IndexModel("invite.hash", name="users_by_invite", sparse=True),
            IndexModel("reset.hash", name="users_by_reset", sparse=True),
        ],
        "api_keys": [
            IndexModel("key_hash", name="api_keys_by_hash", unique=True),
            IndexModel([("tenant_id", 1), ("_id", 1)], name="api_keys_by_tenant"),
        ],
    }

    if TYPE_CHECKING:  # provided by MongoStore
        _db: AsyncDatabase[Document]

        def _write(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        def _read(self, *, deadline: bool = True) -> AbstractAsyncContextManager[AsyncDatabase[Document]]: ...
        async def _new_id(self, name: str) -> int: ...
        async def _audit_doc(self, entry: AuditEntry) -> Document: ...
        async def _settle_audit(self, collection: str, doc: Document | None) -> None: ...

    # -- tenants -----------------------------------------------------------------------

    async def create_tenant(self, name: str, *, audit: AuditEntry | None = None) -> Tenant:
        async with self._write() as db:
            tenant = Tenant(await self._new_id("tenants"), name, time.time())
            entry = None
            if audit is not None:
                entry = await self._audit_doc(replace(audit, tenant_id=tenant.id, target_id=str(tenant.id)))
            try:
                await db.tenants.insert_one(
                    with_audit({"_id": tenant.id, "name": name, "created_at": tenant.created_at}, entry)
                )
            except DuplicateKeyError as exc:
                raise TenantExists(name) from exc
            await self._settle_audit("tenants", entry)
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
        _check_role(role)
        async with self._write() as db:
            if await db.tenants.find_one({"_id": tenant_id}, {"_id": 1}) is None:
                raise ValueError(f"no tenant with id {tenant_id}")
            status: UserStatus = "active" if invitation is None else "invited"
            user_id = await self._new_id("users")
            user = User(user_id, tenant_id, email, password_hash, role, platform_admin, time.time(), name, status)
            doc: Document = {
                "_id": user.id,
                "tenant_id": tenant_id,
                "email": email,
                "password_hash": password_hash,
                "role": role,
                "platform_admin": platform_admin,
                "created_at": user.created_at,
                "name": name,
                "status": status,
            }
            if invitation is not None:
                doc["invite"] = _token_doc(invitation)
            entry = None if audit is None else await self._audit_doc(replace(audit, target_id=str(user.id)))
            try:
                await db.users.insert_one(with_audit(doc, entry))
            except DuplicateKeyError as exc:
                raise UserExists(email) from exc
            await self._settle_audit("users", entry)
            return user

    async def user(self, user_id: int) -> User | None:
        async with self._read() as db:
            return _user(await db.users.find_one({"_id": user_id}))

    async def user_by_email(self, email: str) -> User | None:
        async with self._read() as db:
            return _user(await db.users.find_one({"email": normalize_email(email)}))

    async def users(self, tenant_id: int, *, after_id: int | None = None, limit: int = 100) -> list[User]:
        async with self._read() as db:
            query = {"tenant_id": tenant_id, "_id": {"$gt": after_id or 0}}
            docs = await db.users.find(query).sort("_id").limit(limit).to_list(None)
        return [user for user in map(_user, docs) if user is not None]

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
        if role is not None:
            _check_role(role)
        async with self._write() as db:
            user = _user(await db.users.find_one({"_id": user_id, "tenant_id": tenant_id}))
            if user is None:
                return None
            if (
                not user.is_active_admin
                or apply_user_change(user, name=name, role=role, disabled=disabled).is_active_admin
            ):
                return await self._apply_user_change(user, name=name, role=role, disabled=disabled, audit=audit)
            async with self._admin_lock(tenant_id):
                # Read again under the lock: another admin's demotion may have landed meanwhile.
                user = _user(await db.users.find_one({"_id": user_id, "tenant_id": tenant_id}))
                if user is None:
                    return None
                if (
                    user.is_active_admin
                    and not apply_user_change(user, name=name, role=role, disabled=disabled).is_active_admin
                ):
                    others = await db.users.count_documents(
                        {"tenant_id": tenant_id, "role": "admin", "status": "active", "_id": {"$ne": user_id}}
                    )
                    if not others:
                        raise LastAdmin(tenant_id)
                return await self._apply_user_change(user, name=name, role=role, disabled=disabled, audit=audit)

    async def _apply_user_change(
        self, user: User, *, name: str | None, role: Role | None, disabled: bool | None, audit: AuditEntry | None
    ) -> User:
        changed = apply_user_change(user, name=name, role=role, disabled=disabled)
        fields: Document = {}
        if name is not None:
            fields["name"] = name
        if role is not None:
            fields["role"] = role
        if changed.status != user.status:
            fields["status"] = changed.status
        entry = None if audit is None else await self._audit_doc(audit)
        update = with_audit({"$set": fields} if fields else {}, entry)
        if update:
            await self._db.users.update_one({"_id": user.id}, update)
        await self._settle_audit("users", entry)
        return changed

    @asynccontextmanager
    async def _admin_lock(self, tenant_id: int) -> AsyncIterator[None]:
        holder = secrets.token_hex(8)
        deadline = time.monotonic() + ADMIN_LOCK_S
        while True:
            now = time.time()
            taken = await self._db.tenants.find_one_and_update(
                {"_id": tenant_id, "$or": [{"admin_lock": {"$exists": False}}, {"admin_lock.until": {"$lt": now}}]},
                {"$set": {"admin_lock": {"holder": holder, "until": now + ADMIN_LOCK_S}}},
            )
            if taken is not None:
                break
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"tenant {tenant_id}'s admin lock stayed taken; retry")
            await asyncio.sleep(_ADMIN_LOCK_RETRY_S)
        try:
            yield
        finally:
            await self._db.tenants.update_one(
                {"_id": tenant_id, "admin_lock.holder": holder}, {"$unset": {"admin_lock": ""}}
            )

    async def weekly_digest(self, user_id: int) -> bool:
        async with self._read() as db:
            doc = await db.users.find_one({"_id": user_id}, {"weekly_digest": 1})
        return bool(doc and doc.get("weekly_digest"))

    async def set_weekly_digest(self, user_id: int, enabled: bool, *, audit: AuditEntry | None = None) -> bool:
        async with self._write() as db:
            if await db.users.find_one({"_id": user_id}, {"_id": 1}) is None:
                return False
            entry = None if audit is None else await self._audit_doc(audit)
            # Only a document whose setting differs changes (absent reads as off), and its entry with it.
            differs: Document = {"weekly_digest": True} if not enabled else {"weekly_digest": {"$ne": True}}
            result = await db.users.update_one(
                {"_id": user_id, **differs}, with_audit({"$set": {"weekly_digest": enabled}}, entry)
            )
            if result.matched_count:
                await self._settle_audit("users", entry)
            return True

    async def digest_recipients(self, tenant_id: int) -> list[User]:
        async with self._read() as db:
            docs = (
                await db.users.find(
                    {"tenant_id": tenant_id, "role": "admin", "status": "active", "weekly_digest": True}
                )
                .sort("_id")
                .to_list(None)
            )
        return [user for user in map(_user, docs) if user is not None]

    async def set_password_hash(self, user_id: int, password_hash: str, *, audit: AuditEntry | None = None) -> None:
        async with self._write() as db:
            entry = None if audit is None else await self._audit_doc(audit)
            await db.users.update_one(
                {"_id": user_id},
                with_audit({"$set": {"password_hash": password_hash}, "$unset": {"reset": ""}}, entry),
            )
            await self._settle_audit("users", entry)

    async def record_login(self, user_id: int, at: float, *, audit: AuditEntry | None = None) -> None:
        async with self._write() as db:
            entry = None if audit is None else await self._audit_doc(audit)
            await db.users.update_one({"_id": user_id}, with_audit({"$set": {"last_login_at": at}}, entry))
            await self._settle_audit("users", entry)

    async def count_users(self) -> int:
        async with self._read() as db:
            return await db.users.count_documents({})

    async def set_user_token(
        self, user_id: int, purpose: TokenPurpose, token: OneTimeToken, *, audit: AuditEntry | None = None
    ) -> bool:
        status = "invited" if purpose == "invite" else "active"
        async with self._write() as db:
            entry = None if audit is None else await self._audit_doc(audit)
            result = await db.users.update_one(
                {"_id": user_id, "status": status}, with_audit({"$set": {purpose: _token_doc(token)}}, entry)
            )
            if result.matched_count != 1:
                return False
            await self._settle_audit("users", entry)
            return True

    async def user_by_token(self, purpose: TokenPurpose, token_hash: bytes, now: float) -> User | None:
        async with self._read() as db:
            return _user(
                await db.users.find_one({f"{purpose}.hash": token_hash, f"{purpose}.expires_at": {"$gt": now}})
            )

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
        async with self._write() as db:
            entry = None if audit is None else await self._audit_doc(audit)
            result = await db.users.update_one(
                {
                    "_id": user_id,
                    "status": status,
                    f"{purpose}.hash": token_hash,
                    f"{purpose}.expires_at": {"$gt": now},
                },
                with_audit(
                    {"$set": {"password_hash": password_hash, "status": "active"}, "$unset": {purpose: ""}}, entry
                ),
            )
            if result.modified_count != 1:
                return False
            await self._settle_audit("users", entry)
            return True

    # -- API keys ------------------------------------------------------------------------

    async def create_api_key(
        self, *, tenant_id: int, name: str, prefix: str, key_hash: bytes, role: Role, audit: AuditEntry | None = None
    ) -> ApiKey:
        _check_role(role)
        async with self._write() as db:
            key = ApiKey(await self._new_id("api_keys"), tenant_id, name, prefix, key_hash, role, time.time(), False)
            entry = None if audit is None else await self._audit_doc(replace(audit, target_id=str(key.id)))
            # No revoked_at until revoked (see revoke_api_key).
            await db.api_keys.insert_one(
                with_audit(
                    {
                        "_id": key.id,
                        "tenant_id": tenant_id,
                        "name": name,
                        "prefix": prefix,
                        "key_hash": key_hash,
                        "role": role,
                        "created_at": key.created_at,
                    },
                    entry,
                )
            )
            await self._settle_audit("api_keys", entry)
            return key

    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        async with self._read() as db:
            doc = await db.api_keys.find_one({"key_hash": key_hash})
        return _api_key(doc) if doc else None

    async def api_keys(self, tenant_id: int, *, after_id: int | None = None, limit: int | None = None) -> list[ApiKey]:
        async with self._read() as db:
            query = {"tenant_id": tenant_id, "_id": {"$gt": after_id or 0}}
            docs = await db.api_keys.find(query).sort("_id").limit(limit or 0).to_list(None)
        return [_api_key(doc) for doc in docs]

    async def record_api_key_use(self, key_id: int, at: float) -> None:
        async with self._write() as db:
            # $max: never moves back, and sets the field on a key never used before.
            await db.api_keys.update_one({"_id": key_id}, {"$max": {"last_used_at": at}})

    async def revoke_api_key(self, tenant_id: int, key_id: int, *, audit: AuditEntry | None = None) -> bool:
        """Revoke a tenant's key; True when the tenant has that key (revoking twice is harmless)."""
        async with self._write() as db:
            query = {"_id": key_id, "tenant_id": tenant_id}
            entry = None if audit is None else await self._audit_doc(audit)
            # Only the first revocation sets revoked_at, and carries the entry.
            result = await db.api_keys.update_one(
                {**query, "revoked_at": {"$exists": False}}, with_audit({"$set": {"revoked_at": time.time()}}, entry)
            )
            if result.modified_count == 1:
                await self._settle_audit("api_keys", entry)
                return True
            return await db.api_keys.find_one(query, {"_id": 1}) is not None


def _token_doc(token: OneTimeToken) -> Document:
    return {"hash": token.token_hash, "expires_at": token.expires_at}
