"""Tenants, users and partner API keys: the storage port's account half."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["admin", "supervisor", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "supervisor", "viewer")


class TenantExists(Exception):
    """A tenant with that name already exists."""


class UserExists(Exception):
    """A user with that email already exists (emails are unique across tenants)."""


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class User:
    id: int
    tenant_id: int
    email: str
    password_hash: str
    role: Role
    platform_admin: bool  # may create tenants; still sees only its own tenant's data
    created_at: float


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    tenant_id: int
    name: str
    prefix: str  # the first characters of the key, to recognise it in a list
    key_hash: bytes
    role: Role
    created_at: float
    revoked: bool


class AccountStore(Protocol):
    async def create_tenant(self, name: str) -> Tenant: ...
    async def tenant(self, tenant_id: int) -> Tenant | None: ...
    async def tenant_by_name(self, name: str) -> Tenant | None: ...
    async def tenants(self) -> list[Tenant]: ...
    async def ensure_tenant(self, name: str) -> int:
        """The id of the tenant with that name, created when there is none (racing callers get one tenant)."""

    async def create_user(
        self, *, tenant_id: int, email: str, password_hash: str, role: Role, platform_admin: bool = False
    ) -> User: ...
    async def user(self, user_id: int) -> User | None: ...
    async def user_by_email(self, email: str) -> User | None:
        """Emails are compared case-insensitively."""

    async def set_password_hash(self, user_id: int, password_hash: str) -> None: ...
    async def count_users(self) -> int: ...

    async def create_api_key(
        self, *, tenant_id: int, name: str, prefix: str, key_hash: bytes, role: Role
    ) -> ApiKey: ...
    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None: ...
    async def api_keys(self, tenant_id: int) -> list[ApiKey]: ...
    async def revoke_api_key(self, tenant_id: int, key_id: int) -> bool: ...
