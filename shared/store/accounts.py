"""Tenants, users and partner API keys: the storage port's account half."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

from shared.store.audit import AuditEntry

Role = Literal["admin", "supervisor", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "supervisor", "viewer")
UserStatus = Literal["active", "invited", "disabled"]
USER_STATUSES: tuple[UserStatus, ...] = ("active", "invited", "disabled")


class TenantExists(Exception):
    """A tenant with that name already exists."""


class UserExists(Exception):
    """A user with that email already exists (emails are unique across tenants)."""


class LastAdmin(Exception):
    """The change would leave the tenant without an active admin."""


@dataclass(frozen=True, slots=True)
class OneTimeToken:
    """A single-use link's token as stored: its SHA-256 only, and when it stops working."""

    token_hash: bytes
    expires_at: float


TokenPurpose = Literal["invite", "reset"]


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
    name: str = ""
    status: UserStatus = "active"  # only an active user signs in; an invited one has no password yet
    last_login_at: float | None = None

    @property
    def is_active_admin(self) -> bool:
        return self.role == "admin" and self.status == "active"


def apply_user_change(user: User, *, name: str | None, role: Role | None, disabled: bool | None) -> User:
    """The user with a change applied (what update_user stores). Re-enabling gives back the status
    the user had before: active, or invited for an account disabled before it was ever accepted
    (it has no password: `password_hash` is empty)."""
    status = user.status
    if disabled is True:
        status = "disabled"
    elif disabled is False and user.status == "disabled":
        status = "active" if user.password_hash else "invited"
    return replace(
        user, name=user.name if name is None else name, role=user.role if role is None else role, status=status
    )


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
    last_used_at: float | None = None  # when it last authenticated a request, to within a minute or so


class AccountStore(Protocol):
    async def create_tenant(self, name: str, *, audit: AuditEntry | None = None) -> Tenant:
        """Raises TenantExists. The audit entry's tenant and target become the new tenant."""

    async def tenant(self, tenant_id: int) -> Tenant | None: ...
    async def tenant_by_name(self, name: str) -> Tenant | None: ...
    async def tenants(self) -> list[Tenant]: ...
    async def ensure_tenant(self, name: str) -> int:
        """The id of the tenant with that name, created when there is none (racing callers get one tenant)."""

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
        """A new active user; with `invitation`, an invited one (status "invited") whose invitation
        token is that one, and whose password_hash is "" until accepted. Raises UserExists."""

    async def user(self, user_id: int) -> User | None: ...
    async def user_by_email(self, email: str) -> User | None:
        """Emails are compared case-insensitively."""

    async def users(self, tenant_id: int, *, after_id: int | None = None, limit: int = 100) -> list[User]:
        """The tenant's users by id; `after_id` is the cursor (the last id of the previous page)."""

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
        """Change what is given; None when the tenant has no such user. `disabled=False` makes a
        disabled user active again (an invited one stays invited). Raises LastAdmin, checked
        atomically with the change, when no active admin would be left."""

    async def weekly_digest(self, user_id: int) -> bool:
        """Whether the user asked for the weekly digest email (off until they do)."""

    async def set_weekly_digest(self, user_id: int, enabled: bool, *, audit: AuditEntry | None = None) -> bool:
        """Ask for the weekly digest or stop it; False when there is no such user. `audit` is written
        with the change, and only when it changes something. Anyone may ask; only admins get it."""

    async def digest_recipients(self, tenant_id: int) -> list[User]:
        """The tenant's active admins who asked for the weekly digest, by id."""

    async def set_password_hash(self, user_id: int, password_hash: str, *, audit: AuditEntry | None = None) -> None:
        """Also voids a pending password reset (a reset link must not outlive the password it replaces)."""

    async def record_login(self, user_id: int, at: float, *, audit: AuditEntry | None = None) -> None:
        """Set last_login_at (and store the login's audit entry with it)."""

    async def count_users(self) -> int: ...

    async def set_user_token(
        self, user_id: int, purpose: TokenPurpose, token: OneTimeToken, *, audit: AuditEntry | None = None
    ) -> bool:
        """Give the user a new invitation (only while invited) or reset token (only while active),
        replacing any earlier one of that purpose; False otherwise."""

    async def user_by_token(self, purpose: TokenPurpose, token_hash: bytes, now: float) -> User | None:
        """The user holding that unexpired token; None otherwise."""

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
        """Spend the token and set the password (an invited user becomes active) in one write; True for
        exactly one of any callers racing with the same token, False when it is not (or no longer) valid."""

    async def create_api_key(
        self, *, tenant_id: int, name: str, prefix: str, key_hash: bytes, role: Role, audit: AuditEntry | None = None
    ) -> ApiKey: ...
    async def api_key_by_hash(self, key_hash: bytes) -> ApiKey | None: ...
    async def api_keys(self, tenant_id: int, *, after_id: int | None = None, limit: int | None = None) -> list[ApiKey]:
        """The tenant's keys by id, revoked ones included; `after_id` is the cursor (the last id of the
        previous page), `limit` None for all."""

    async def record_api_key_use(self, key_id: int, at: float) -> None:
        """Set the key's last_used_at to `at`, unless it is later already (uses reported out of order).
        Not audited: it records a use, not a change anyone made (and runs at most once a minute per key)."""

    async def revoke_api_key(self, tenant_id: int, key_id: int, *, audit: AuditEntry | None = None) -> bool:
        """True when the tenant has that key (revoking twice is harmless; only the first is audited)."""
