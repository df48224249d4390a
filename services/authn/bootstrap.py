"""Accounts that exist before anyone can log in: the first admin, and tenants with their admins."""

from __future__ import annotations

import secrets
from typing import Any

from email_validator import EmailNotValidError, validate_email

from services.authn.passwords import check_new_password, hash_password, verify_password
from shared.config import Settings, SettingsError
from shared.logging import get_logger
from shared.store.accounts import AccountStore, TenantExists, UserExists
from shared.store.audit import Actor, AuditEntry

log = get_logger("solewatch.authn")

DEFAULT_TENANT = "default"
DEMO_ADMIN_EMAIL = "admin@solewatch.local"
MAX_TENANT_NAME = 100


class InvalidAccount(ValueError):
    """A tenant name, email or password that cannot be used."""


def valid_email(email: str) -> str:
    """The address lowercased, or InvalidAccount; the same rules as the API's EmailStr."""
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise InvalidAccount(f"{email!r} is not a valid email address: {exc}") from None


async def ensure_first_admin(settings: Settings, store: AccountStore) -> dict[str, Any] | None:
    """Create the first admin (a platform admin, tenant "default") when no user exists.

    The account comes from SOLEWATCH_ADMIN_EMAIL and SOLEWATCH_ADMIN_PASSWORD;
    without them it is admin@solewatch.local with a random password, returned
    (`"password"`) so the caller shows it once. None when users already exist.
    Raises SettingsError when only one of the two settings is given, or a weak password.
    """
    if await store.count_users():
        return None
    email, password = _first_admin_credentials(settings)
    generated = password is None
    if password is None:
        password = secrets.token_urlsafe(18)
    tenant_id = await store.ensure_tenant(DEFAULT_TENANT)
    password_hash = await hash_password(password)
    audit = AuditEntry(
        tenant_id, Actor.system("first start"), "user.create", "user", None, {"email": email, "role": "admin"}
    )
    try:
        user = await store.create_user(
            tenant_id=tenant_id,
            email=email,
            password_hash=password_hash,
            role="admin",
            platform_admin=True,
            audit=audit,
        )
    except UserExists:  # another process bootstrapped at the same moment
        return None
    log.info("first_admin_created", email=user.email, tenant=DEFAULT_TENANT, generated_password=generated)
    return {
        "tenant": DEFAULT_TENANT,
        "tenant_id": tenant_id,
        "email": user.email,
        "password": password if generated else None,
        "generated": generated,
    }


async def ignored_admin_settings(settings: Settings, store: AccountStore) -> str | None:
    """Why SOLEWATCH_ADMIN_EMAIL/PASSWORD do nothing on this start, as a sentence; None when they are not set
    or already describe a user who signs in with that password.

    They only ever create the first admin of an empty store. Silently ignoring
    them left people with a 401 and no clue (a walkthrough rerun in a data
    directory where the demo admin had been created).
    """
    email = (settings.admin_email or "").strip().lower()
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    if not email and password is None:
        return None
    user = await store.user_by_email(email) if email else None
    if user is not None:
        if password is None or (await verify_password(user.password_hash, password)).ok:
            return None
        return (
            f"SOLEWATCH_ADMIN_PASSWORD is ignored: {user.email} already exists with another password "
            "(the setting only creates the first admin); sign in with its current password"
        )
    where = "the MongoDB database" if settings.mongodb_url else f"the data directory {settings.data_dir}"
    return (
        f"SOLEWATCH_ADMIN_EMAIL and SOLEWATCH_ADMIN_PASSWORD are ignored: {where} already has users, and "
        "they only create the first admin of an empty one; sign in as an existing user, or start with "
        "another SOLEWATCH_DATA_DIR"
    )


def _first_admin_credentials(settings: Settings) -> tuple[str, str | None]:
    email = (settings.admin_email or "").strip()
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    if not email and password is None:
        return DEMO_ADMIN_EMAIL, None
    if not email or password is None:
        raise SettingsError("give SOLEWATCH_ADMIN_EMAIL and SOLEWATCH_ADMIN_PASSWORD together")
    # Deliberately looser than valid_email: operators may use internal domains
    # (the demo admin itself is at .local, which EmailStr refuses).
    local, at, domain = email.partition("@")
    if not (local and at and domain) or "@" in domain or any(ch.isspace() for ch in email):
        raise SettingsError("SOLEWATCH_ADMIN_EMAIL is not an email address")
    try:
        check_new_password(password)
    except ValueError as exc:
        raise SettingsError(f"SOLEWATCH_ADMIN_PASSWORD: {exc}") from None
    return email.lower(), password


async def add_tenant(
    store: AccountStore,
    *,
    name: str,
    admin_email: str,
    admin_password: str,
    platform_admin: bool = False,
    actor: Actor | None = None,
) -> dict[str, Any]:
    """Create a tenant and its first admin, both recorded in the new tenant's audit log as done by
    `actor` (default: the command line).

    Raises InvalidAccount (bad name, email or password), TenantExists or UserExists.
    """
    actor = actor or Actor.system("cli")
    name = name.strip()
    if not name or len(name) > MAX_TENANT_NAME:
        raise InvalidAccount(f"a tenant name has 1 to {MAX_TENANT_NAME} characters")
    email = valid_email(admin_email)
    try:
        check_new_password(admin_password)
    except ValueError as exc:
        raise InvalidAccount(str(exc)) from None
    # Checked before creating anything, so a taken email leaves no empty tenant behind.
    if await store.tenant_by_name(name) is not None:
        raise TenantExists(name)
    if await store.user_by_email(email) is not None:
        raise UserExists(email)
    password_hash = await hash_password(admin_password)
    tenant = await store.create_tenant(
        name, audit=AuditEntry(0, actor, "tenant.create", "tenant", None, {"name": name})
    )
    user = await store.create_user(
        tenant_id=tenant.id,
        email=email,
        password_hash=password_hash,
        role="admin",
        platform_admin=platform_admin,
        audit=AuditEntry(tenant.id, actor, "user.create", "user", None, {"email": email, "role": "admin"}),
    )
    log.info("tenant_created", tenant=tenant.name, tenant_id=tenant.id, admin=user.email)
    return {
        "tenant": {"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at},
        "admin": {"id": user.id, "email": user.email, "role": user.role, "platform_admin": user.platform_admin},
    }
