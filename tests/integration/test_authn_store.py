"""The SQLite account store: tenants, users (case-insensitive emails), API keys."""

from __future__ import annotations

import hashlib

import pytest

from shared.store.accounts import TenantExists, UserExists
from shared.store.sqlite import SqliteStore


async def test_tenants(store):
    acme = await store.create_tenant("acme")
    with pytest.raises(TenantExists):
        await store.create_tenant("acme")
    devices_tenant = await store.ensure_tenant("default")  # the device path's tenants are the same table
    assert await store.tenant(acme.id) == acme
    assert await store.tenant_by_name("acme") == acme
    assert await store.tenant_by_name("nobody") is None and await store.tenant(999) is None
    assert [tenant.name for tenant in await store.tenants()] == ["acme", "default"]
    assert (await store.tenant_by_name("default")).id == devices_tenant


async def test_users_have_unique_case_insensitive_emails(store):
    tenant = await store.create_tenant("acme")
    other = await store.create_tenant("other")
    assert await store.count_users() == 0
    ana = await store.create_user(tenant_id=tenant.id, email=" Ana@Example.COM", password_hash="h1", role="admin")
    assert ana.email == "ana@example.com" and ana.platform_admin is False
    with pytest.raises(UserExists):  # emails are unique across tenants too
        await store.create_user(tenant_id=other.id, email="ANA@example.com", password_hash="h2", role="viewer")
    assert await store.user_by_email("aNa@EXAMPLE.com") == ana
    assert await store.user(ana.id) == ana
    assert await store.user_by_email("bob@example.com") is None
    boss = await store.create_user(
        tenant_id=other.id, email="boss@example.com", password_hash="h3", role="supervisor", platform_admin=True
    )
    assert (await store.user(boss.id)).platform_admin is True
    assert await store.count_users() == 2
    await store.set_password_hash(ana.id, "h4")
    assert (await store.user(ana.id)).password_hash == "h4"


async def test_user_needs_an_existing_tenant_and_a_known_role(store):
    with pytest.raises(ValueError, match="no tenant"):
        await store.create_user(tenant_id=42, email="a@example.com", password_hash="h", role="admin")
    tenant = await store.create_tenant("acme")
    with pytest.raises(ValueError):
        await store.create_user(tenant_id=tenant.id, email="a@example.com", password_hash="h", role="root")  # type: ignore[arg-type]
    assert await store.count_users() == 0


async def test_api_keys(store):
    acme = await store.create_tenant("acme")
    other = await store.create_tenant("other")
    digest = hashlib.sha256(b"sw_key").digest()
    key = await store.create_api_key(
        tenant_id=acme.id, name="dispatch", prefix="sw_abc", key_hash=digest, role="supervisor"
    )
    await store.create_api_key(
        tenant_id=other.id, name="theirs", prefix="sw_def", key_hash=hashlib.sha256(b"other").digest(), role="viewer"
    )
    assert await store.api_key_by_hash(digest) == key and key.revoked is False
    assert [k.name for k in await store.api_keys(acme.id)] == ["dispatch"]
    assert await store.revoke_api_key(other.id, key.id) is False  # not theirs to revoke
    assert (await store.api_key_by_hash(digest)).revoked is False
    assert await store.revoke_api_key(acme.id, key.id) is True
    assert await store.revoke_api_key(acme.id, key.id) is True  # already revoked: still there
    assert await store.revoke_api_key(acme.id, 999) is False
    assert (await store.api_key_by_hash(digest)).revoked is True
    assert (await store.api_keys(acme.id))[0].revoked is True


async def test_accounts_survive_a_reopen(tmp_path):
    store = SqliteStore(tmp_path / "solewatch.db")
    await store.open()
    tenant = await store.create_tenant("acme")
    await store.create_user(tenant_id=tenant.id, email="a@example.com", password_hash="h", role="viewer")
    await store.close()
    store = SqliteStore(tmp_path / "solewatch.db")
    await store.open()  # the schema is created only if missing
    try:
        assert (await store.user_by_email("a@example.com")).role == "viewer"
    finally:
        await store.close()
