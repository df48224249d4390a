"""The accounts port (shared/store/accounts.py) for every adapter in STORE_FACTORIES: tenants,
users, API keys.

Only port methods are used, never an adapter's tables. Each test gets a fresh, empty store.
"""

from __future__ import annotations

import asyncio

import pytest

from shared.store import Store
from shared.store.accounts import TenantExists, UserExists


async def test_tenants(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    assert acme.name == "Acme"
    with pytest.raises(TenantExists):
        await store.create_tenant("Acme")
    ensured = await store.ensure_tenant("Globex")
    with pytest.raises(TenantExists):
        await store.create_tenant("Globex")
    assert await store.ensure_tenant("Acme") == acme.id

    assert await store.tenant(acme.id) == acme
    assert await store.tenant_by_name("Acme") == acme
    assert await store.tenant_by_name("Nobody") is None
    assert await store.tenant(acme.id + ensured + 1000) is None
    assert [(t.id, t.name) for t in await store.tenants()] == [(acme.id, "Acme"), (ensured, "Globex")]


async def test_concurrent_tenant_creation_has_one_winner(store: Store) -> None:
    created = await asyncio.gather(*(store.create_tenant("Acme") for _ in range(10)), return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in created) == 1
    assert all(isinstance(r, TenantExists) for r in created if isinstance(r, BaseException))
    ensured = await asyncio.gather(*(store.ensure_tenant("Globex") for _ in range(10)))
    assert len(set(ensured)) == 1
    assert [t.name for t in await store.tenants()] == ["Acme", "Globex"]


async def test_users_have_unique_case_insensitive_emails(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    globex = await store.create_tenant("Globex")
    ana = await store.create_user(
        tenant_id=acme.id, email="Ana@Acme.example", password_hash="h1", role="admin", platform_admin=True
    )
    assert (ana.tenant_id, ana.email.lower(), ana.password_hash, ana.role, ana.platform_admin) == (
        acme.id,
        "ana@acme.example",
        "h1",
        "admin",
        True,
    )
    with pytest.raises(UserExists):
        await store.create_user(tenant_id=acme.id, email="ana@acme.example", password_hash="h2", role="viewer")
    with pytest.raises(UserExists):  # unique across tenants
        await store.create_user(tenant_id=globex.id, email="ANA@ACME.EXAMPLE", password_hash="h3", role="viewer")

    assert await store.user_by_email("aNa@acme.EXAMPLE") == ana
    assert await store.user(ana.id) == ana
    assert await store.user_by_email("bob@acme.example") is None
    bob = await store.create_user(tenant_id=globex.id, email="bob@globex.example", password_hash="h", role="viewer")
    assert bob.platform_admin is False
    assert await store.count_users() == 2

    racing = await asyncio.gather(
        *(
            store.create_user(
                tenant_id=acme.id,
                email=f"{'CAROL' if n % 2 else 'carol'}@acme.example",
                password_hash="h",
                role="viewer",
            )
            for n in range(10)
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in racing) == 1
    assert all(isinstance(r, UserExists) for r in racing if isinstance(r, BaseException))

    await store.set_password_hash(ana.id, "h-new")
    assert (await store.user_by_email("ana@acme.example")).password_hash == "h-new"  # type: ignore[union-attr]


async def test_api_keys_by_hash_and_revocation(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    globex = await store.create_tenant("Globex")
    key = await store.create_api_key(tenant_id=acme.id, name="erp", prefix="sw_ab12", key_hash=b"k" * 32, role="viewer")
    assert (key.tenant_id, key.name, key.prefix, key.key_hash, key.role, key.revoked) == (
        acme.id,
        "erp",
        "sw_ab12",
        b"k" * 32,
        "viewer",
        False,
    )
    other = await store.create_api_key(tenant_id=acme.id, name="bi", prefix="sw_cd34", key_hash=b"j" * 32, role="admin")

    assert await store.api_key_by_hash(b"k" * 32) == key
    assert await store.api_key_by_hash(b"x" * 32) is None
    assert await store.api_keys(acme.id) == [key, other]
    assert await store.api_keys(globex.id) == []

    assert await store.revoke_api_key(globex.id, key.id) is False  # another tenant's key
    assert (await store.api_key_by_hash(b"k" * 32)).revoked is False  # type: ignore[union-attr]
    assert await store.revoke_api_key(acme.id, key.id) is True
    assert (await store.api_key_by_hash(b"k" * 32)).revoked is True  # type: ignore[union-attr]
    assert await store.revoke_api_key(acme.id, key.id) is True  # revoking twice is harmless
    assert await store.revoke_api_key(acme.id, key.id + other.id + 1000) is False
    assert [k.revoked for k in await store.api_keys(acme.id)] == [True, False]


async def test_api_key_last_use_is_kept_and_never_moves_back(store: Store) -> None:
    acme = await store.create_tenant("Acme")
    used = await store.create_api_key(
        tenant_id=acme.id, name="erp", prefix="sw_ab12", key_hash=b"k" * 32, role="viewer"
    )
    idle = await store.create_api_key(tenant_id=acme.id, name="bi", prefix="sw_cd34", key_hash=b"j" * 32, role="admin")
    assert used.last_used_at is None

    await store.record_api_key_use(used.id, 1_800_000_000.5)
    assert (await store.api_key_by_hash(b"k" * 32)).last_used_at == 1_800_000_000.5  # type: ignore[union-attr]
    await store.record_api_key_use(used.id, 1_800_000_060.25)
    await store.record_api_key_use(used.id, 1_800_000_030.0)  # reported late by a slower process: ignored
    assert [(k.id, k.last_used_at) for k in await store.api_keys(acme.id)] == [
        (used.id, 1_800_000_060.25),
        (idle.id, None),
    ]
    await store.record_api_key_use(used.id + idle.id + 1000, 1_800_000_100.0)  # no such key: nothing happens

    await store.revoke_api_key(acme.id, used.id)
    revoked = await store.api_key_by_hash(b"k" * 32)
    assert revoked is not None and revoked.revoked and revoked.last_used_at == 1_800_000_060.25


async def test_api_keys_page_by_id(store: Store) -> None:
    acme, globex = await store.create_tenant("Acme"), await store.create_tenant("Globex")
    keys = []
    for n in range(5):
        keys.append(
            await store.create_api_key(
                tenant_id=acme.id, name=f"k{n}", prefix=f"sw_{n}", key_hash=bytes([n]) * 32, role="viewer"
            )
        )
        await store.create_api_key(
            tenant_id=globex.id, name=f"g{n}", prefix=f"sw_g{n}", key_hash=bytes([100 + n]) * 32, role="viewer"
        )
    first = await store.api_keys(acme.id, limit=2)
    assert [k.name for k in first] == ["k0", "k1"]
    rest = await store.api_keys(acme.id, after_id=first[-1].id, limit=10)
    assert [k.name for k in rest] == ["k2", "k3", "k4"]
    assert await store.api_keys(acme.id, after_id=keys[-1].id) == []
    assert [k.name for k in await store.api_keys(acme.id)] == [f"k{n}" for n in range(5)]
