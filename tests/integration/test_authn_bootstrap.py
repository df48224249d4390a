"""The first admin and `tenants add`: accounts that exist before anyone can log in."""

from __future__ import annotations

import os

import pytest
from argon2 import PasswordHasher

from services.authn import passwords
from services.authn.bootstrap import InvalidAccount, add_tenant, ensure_first_admin
from services.authn.passwords import verify_password
from shared.config import Settings, SettingsError
from shared.store.accounts import TenantExists, UserExists


@pytest.fixture(autouse=True)
def cheap_hasher(monkeypatch):
    monkeypatch.setattr(passwords, "hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    for name in [name for name in os.environ if name.startswith("SOLEWATCH_")]:
        monkeypatch.delenv(name)


async def test_without_settings_a_demo_admin_gets_a_random_password(store, tmp_path):
    created = await ensure_first_admin(Settings(data_dir=tmp_path), store)
    assert created is not None and created["generated"] is True
    assert created["email"] == "admin@solewatch.local" and len(created["password"]) >= 16
    user = await store.user_by_email("admin@solewatch.local")
    assert user.role == "admin" and user.platform_admin is True
    assert (await store.tenant(user.tenant_id)).name == "default" == created["tenant"]
    assert (await verify_password(user.password_hash, created["password"])).ok
    # Printed once: the next start finds a user and creates nothing.
    assert await ensure_first_admin(Settings(data_dir=tmp_path), store) is None
    assert await store.count_users() == 1


async def test_first_admin_from_settings(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SOLEWATCH_ADMIN_EMAIL", "Ops@Corp.Example")
    monkeypatch.setenv("SOLEWATCH_ADMIN_PASSWORD", "a long passphrase")
    existing = await store.ensure_tenant("default")  # e.g. made by `devices add` before any user
    created = await ensure_first_admin(Settings(data_dir=tmp_path), store)
    assert created == {
        "tenant": "default",
        "tenant_id": existing,
        "email": "ops@corp.example",
        "password": None,
        "generated": False,
    }
    user = await store.user_by_email("ops@corp.example")
    assert user.tenant_id == existing and user.platform_admin
    assert (await verify_password(user.password_hash, "a long passphrase")).ok


async def test_first_admin_settings_must_come_together_and_be_strong(store, tmp_path):
    for values in (
        {"admin_email": "ops@corp.example"},
        {"admin_password": "a long passphrase"},
        {"admin_email": "ops@corp.example", "admin_password": "short"},
        {"admin_email": "not an email", "admin_password": "a long passphrase"},
    ):
        with pytest.raises(SettingsError):
            await ensure_first_admin(Settings(data_dir=tmp_path, **values), store)
    assert await store.count_users() == 0


async def test_existing_users_are_left_alone(store, tmp_path):
    await add_tenant(store, name="acme", admin_email="a@acme.example", admin_password="a long passphrase")
    settings = Settings(data_dir=tmp_path, admin_email="new@corp.example", admin_password="a long passphrase")
    assert await ensure_first_admin(settings, store) is None
    assert await store.user_by_email("new@corp.example") is None


async def test_add_tenant(store):
    created = await add_tenant(
        store, name=" acme ", admin_email="Boss@Acme.example", admin_password="a long passphrase"
    )
    assert created["tenant"]["name"] == "acme"
    assert created["admin"] == {
        "id": created["admin"]["id"],
        "email": "boss@acme.example",
        "role": "admin",
        "platform_admin": False,
    }
    user = await store.user_by_email("boss@acme.example")
    assert user.tenant_id == created["tenant"]["id"]
    assert (await verify_password(user.password_hash, "a long passphrase")).ok
    with pytest.raises(TenantExists):
        await add_tenant(store, name="acme", admin_email="other@acme.example", admin_password="a long passphrase")
    with pytest.raises(UserExists):
        await add_tenant(store, name="beta", admin_email="BOSS@acme.example", admin_password="a long passphrase")
    assert await store.tenant_by_name("beta") is None  # a refused admin leaves no empty tenant
    platform = await add_tenant(
        store, name="ops", admin_email="root@ops.example", admin_password="a long passphrase", platform_admin=True
    )
    assert platform["admin"]["platform_admin"] is True


@pytest.mark.parametrize(
    "name, email, password",
    [
        ("", "a@acme.example", "a long passphrase"),
        ("x" * 101, "a@acme.example", "a long passphrase"),
        ("acme", "not-an-email", "a long passphrase"),
        ("acme", "a@acme.example", "short"),
    ],
)
async def test_add_tenant_refuses_bad_input(store, name, email, password):
    with pytest.raises(InvalidAccount):
        await add_tenant(store, name=name, admin_email=email, admin_password=password)
    assert await store.tenants() == [] and await store.count_users() == 0


async def test_accounts_made_outside_the_api_are_in_the_audit_log(store, tmp_path):
    created = await ensure_first_admin(Settings(data_dir=tmp_path), store)
    (first,) = await store.audit_log(created["tenant_id"])
    assert (first.entry.action, first.entry.actor.type, first.entry.actor.label) == (
        "user.create",
        "system",
        "first start",
    )
    tenant = await add_tenant(store, name="acme", admin_email="boss@acme.example", admin_password="a long passphrase")
    log = await store.audit_log(tenant["tenant"]["id"])
    assert [(r.entry.action, r.entry.actor.type, r.entry.actor.label) for r in log] == [
        ("user.create", "system", "cli"),
        ("tenant.create", "system", "cli"),
    ]
    assert log[0].entry.target_id == str(tenant["admin"]["id"]) and log[1].entry.target_id == str(
        tenant["tenant"]["id"]
    )


async def test_passwords_have_at_least_12_characters(store):
    with pytest.raises(InvalidAccount):
        await add_tenant(store, name="acme", admin_email="boss@acme.example", admin_password="eleven char")
    assert await store.tenant_by_name("acme") is None
