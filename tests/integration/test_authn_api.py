"""The authn HTTP API over ASGI: login, limits, refresh rotation, logout, API keys, tenants, roles."""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from services.authn import passwords
from services.authn.deps import AdminPrincipal, SupervisorPrincipal
from services.authn.passwords import hash_password
from services.authn.routes import router
from services.authn.tokens import issue_access_token
from services.context import ServiceContext
from shared.cache.memory import MemoryCache
from shared.config import Settings
from shared.store.accounts import Role, User
from shared.store.sqlite import SqliteStore

PASSWORD = "a long passphrase"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class Authn:
    app: FastAPI
    settings: Settings
    store: SqliteStore
    tenant_id: int

    def client(self, address: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://solewatch.test")

    async def add_user(
        self,
        email: str,
        role: Role = "admin",
        *,
        tenant_id: int | None = None,
        platform_admin: bool = False,
        password: str = PASSWORD,
    ) -> User:
        return await self.store.create_user(
            tenant_id=tenant_id or self.tenant_id,
            email=email,
            password_hash=await hash_password(password),
            role=role,
            platform_admin=platform_admin,
        )


@pytest.fixture
async def authn(tmp_path, monkeypatch) -> AsyncIterator[Authn]:
    monkeypatch.setattr(passwords, "hasher", CHEAP)
    for name in [name for name in os.environ if name.startswith("SOLEWATCH_")]:
        monkeypatch.delenv(name)  # the limits and TTLs under test are the defaults
    settings = Settings(data_dir=tmp_path / "data")
    store = SqliteStore(settings.sqlite_path, synchronous="NORMAL")
    await store.open()
    app = FastAPI()
    app.include_router(router)

    @app.get("/test/supervisor")
    async def supervisor_only(principal: SupervisorPrincipal) -> dict[str, str]:
        return {"role": principal.role}

    @app.get("/test/admin")
    async def admin_only(principal: AdminPrincipal) -> dict[str, str]:
        return {"actor": principal.actor}

    app.state.context = ServiceContext(settings, store, MemoryCache(), bus=None, commands=None)  # type: ignore[arg-type]
    tenant = await store.create_tenant("acme")
    try:
        yield Authn(app, settings, store, tenant.id)
    finally:
        await store.close()


@pytest.fixture
async def client(authn) -> AsyncIterator[httpx.AsyncClient]:
    async with authn.client() as client:
        yield client


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict:
    response = await client.post("/api/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(pair: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["detail"], str)


# -- logging in ------------------------------------------------------------------------------


async def test_login_and_me(authn, client):
    await authn.add_user("Ana@Example.com", "supervisor")
    response = await client.post("/api/v1/auth/token", json={"email": "ANA@example.COM", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert response.headers["cache-control"] == "no-store"
    me = await client.get("/api/v1/auth/me", headers=bearer(body))
    assert me.status_code == 200
    assert me.json() == {
        "via": "token",
        "email": "ana@example.com",
        "role": "supervisor",
        "platform_admin": False,
        "user_id": me.json()["user_id"],
        "api_key_id": None,
        "tenant": {"id": authn.tenant_id, "name": "acme"},
    }


async def test_wrong_password_and_unknown_email_look_the_same(authn, client, monkeypatch):
    await authn.add_user("ana@example.com")
    verifications = []

    class CountingHasher(PasswordHasher):
        def verify(self, hash, password):
            verifications.append(1)
            return super().verify(hash, password)

    monkeypatch.setattr(passwords, "hasher", CountingHasher(time_cost=1, memory_cost=1024, parallelism=1))
    wrong = await client.post("/api/v1/auth/token", json={"email": "ana@example.com", "password": "wrong one"})
    unknown = await client.post("/api/v1/auth/token", json={"email": "nobody@example.com", "password": "wrong one"})
    for response in (wrong, unknown):
        assert_unauthorized(response)
    assert wrong.json() == unknown.json() == {"detail": "incorrect email or password"}
    drop = {"date"}
    assert {k: v for k, v in wrong.headers.items() if k not in drop} == {
        k: v for k, v in unknown.headers.items() if k not in drop
    }
    assert len(verifications) == 2  # the unknown email cost an argon2 verification too


async def test_password_is_rehashed_when_parameters_change(authn, client, monkeypatch):
    user = await authn.add_user("ana@example.com")
    monkeypatch.setattr(passwords, "hasher", PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1))
    await login(client, "ana@example.com")
    stored = (await authn.store.user(user.id)).password_hash
    assert stored != user.password_hash and "t=2" in stored
    await login(client, "ana@example.com")  # and the new hash works


# -- rate limits --------------------------------------------------------------------------------


def assert_throttled(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["detail"], str)
    return int(response.headers["retry-after"])


async def test_hammering_an_account_slows_the_attacker_not_the_real_user(authn):
    await authn.add_user("admin@example.com", platform_admin=True)
    async with authn.client("203.0.113.7") as attacker, authn.client("198.51.100.1") as admin:
        answers = [
            await attacker.post("/api/v1/auth/token", json={"email": "admin@example.com", "password": "guess"})
            for _ in range(10)
        ]
        assert [answer.status_code for answer in answers[:4]] == [401] * 4  # 3 free failures, then a delay
        assert 0 < assert_throttled(answers[-1]) <= 900
        # The attacker's address waits, even with the right password...
        assert_throttled(
            await attacker.post("/api/v1/auth/token", json={"email": "admin@example.com", "password": PASSWORD})
        )
        # ...while the admin, from an address that has not been failing, logs in at once.
        await login(admin, "admin@example.com")


async def test_an_address_failing_on_many_accounts_is_refused_for_new_ones(authn):
    await authn.add_user("ana@example.com")
    await authn.add_user("bob@example.com")
    async with authn.client("203.0.113.7") as office, authn.client("198.51.100.1") as elsewhere:
        await login(office, "bob@example.com")  # bob works behind the same NAT as the attacker
        for n in range(30):
            assert_unauthorized(
                await office.post("/api/v1/auth/token", json={"email": f"user{n}@example.com", "password": "guess"})
            )
        assert (
            assert_throttled(
                await office.post("/api/v1/auth/token", json={"email": "ana@example.com", "password": PASSWORD})
            )
            > 0
        )
        await login(office, "bob@example.com")  # an account this address logged into before still works
        await login(elsewhere, "ana@example.com")  # and other addresses are not concerned


async def test_success_resets_the_count_of_typos(authn, client):
    await authn.add_user("ana@example.com")
    for _ in range(3):
        for _ in range(3):
            assert_unauthorized(
                await client.post("/api/v1/auth/token", json={"email": "ana@example.com", "password": "typo"})
            )
        await login(client, "ana@example.com")


# -- refresh and logout ----------------------------------------------------------------------------


async def test_refresh_rotates_the_pair(authn, client):
    await authn.add_user("ana@example.com")
    first = await login(client, "ana@example.com")
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert (await client.get("/api/v1/auth/me", headers=bearer(second))).status_code == 200
    third = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200


async def test_reused_refresh_token_revokes_the_session(authn, client):
    await authn.add_user("ana@example.com")
    first = await login(client, "ana@example.com")
    other_session = await login(client, "ana@example.com")
    second = (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_unauthorized(reuse)
    assert_unauthorized(await client.get("/api/v1/auth/me", headers=bearer(second)))
    assert_unauthorized(await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}))
    assert (await client.get("/api/v1/auth/me", headers=bearer(other_session))).status_code == 200


async def test_logout_ends_the_session_at_once(authn, client):
    await authn.add_user("ana@example.com")
    pair = await login(client, "ana@example.com")
    other_session = await login(client, "ana@example.com")
    assert (await client.get("/api/v1/auth/me", headers=bearer(pair))).status_code == 200
    response = await client.post("/api/v1/auth/logout", headers=bearer(pair))
    assert response.status_code == 204 and response.content == b""
    assert_unauthorized(await client.get("/api/v1/auth/me", headers=bearer(pair)))
    assert_unauthorized(await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}))
    assert_unauthorized(await client.post("/api/v1/auth/logout", headers=bearer(pair)))
    assert (await client.get("/api/v1/auth/me", headers=bearer(other_session))).status_code == 200


async def test_unknown_refresh_token_is_refused(client):
    assert_unauthorized(await client.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"}))


# -- bad credentials on protected paths ------------------------------------------------------


async def test_expired_token_is_refused(authn, client):
    user = await authn.add_user("ana@example.com")
    expired = issue_access_token(authn.settings, user=user, session_id="s", now=time.time() - 1000)
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert_unauthorized(response)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["detail"] == "token expired"


async def test_junk_credentials_are_refused_with_json(authn, client):
    user = await authn.add_user("ana@example.com")
    forged = jwt.encode(
        {
            "sub": str(user.id),
            "tid": authn.tenant_id,
            "role": "admin",
            "sid": "s",
            "email": "x",
            "aud": "solewatch",
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
            "jti": "j",
        },
        "not the server's secret, but long enough",
        algorithm="HS256",
    )
    headers_list = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer junk"},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "junk"},
        {"Authorization": f"Bearer {forged}"},
        {"X-API-Key": "junk"},
        {"X-API-Key": "sw_" + "A" * 40},  # well formed, unknown
    ]
    for headers in headers_list:
        response = await client.get("/api/v1/auth/me", headers=headers)
        assert_unauthorized(response)
        assert response.headers["www-authenticate"].startswith("Bearer"), headers


async def test_junk_bodies_get_422_json(client):
    for content in (b"not json", b"{", b"[]", b'{"email": "a@example.com"}', b'{"email": 1, "password": []}'):
        response = await client.post(
            "/api/v1/auth/token", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, content
        assert response.headers["content-type"] == "application/json" and response.json()["detail"]
    assert (await client.post("/api/v1/auth/refresh", json={})).status_code == 422


# -- roles -----------------------------------------------------------------------------------------


async def test_role_dependencies(authn, client):
    for role in ("viewer", "supervisor", "admin"):
        await authn.add_user(f"{role}@example.com", role)
    expected = {"viewer": (403, 403), "supervisor": (200, 403), "admin": (200, 200)}
    for role, (supervisor_status, admin_status) in expected.items():
        headers = bearer(await login(client, f"{role}@example.com"))
        assert (await client.get("/test/supervisor", headers=headers)).status_code == supervisor_status
        response = await client.get("/test/admin", headers=headers)
        assert response.status_code == admin_status
        if admin_status == 403:
            assert response.json()["detail"]
        else:
            assert response.json() == {"actor": "admin@example.com"}


# -- API keys ----------------------------------------------------------------------------------------


async def test_api_key_lifecycle(authn, client):
    await authn.add_user("boss@example.com", "admin")
    admin = bearer(await login(client, "boss@example.com"))
    created = await client.post(
        "/api/v1/api-keys", json={"name": "dispatch centre", "role": "supervisor"}, headers=admin
    )
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert re.fullmatch(r"sw_[A-Za-z0-9_-]{40}", key) and key.startswith(body["prefix"])
    assert body["role"] == "supervisor" and body["revoked"] is False

    listed = (await client.get("/api/v1/api-keys", headers=admin)).json()["items"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert "key" not in listed[0] and key not in str(listed)

    as_key = {"X-API-Key": key}
    me = (await client.get("/api/v1/auth/me", headers=as_key)).json()
    assert (me["via"], me["role"], me["api_key_id"], me["email"]) == ("api_key", "supervisor", body["id"], None)
    assert (await client.get("/test/supervisor", headers=as_key)).status_code == 200
    assert (await client.get("/test/admin", headers=as_key)).status_code == 403
    assert (await client.post("/api/v1/auth/logout", headers=as_key)).status_code == 403

    assert (await client.delete(f"/api/v1/api-keys/{body['id']}", headers=admin)).status_code == 204
    assert_unauthorized(await client.get("/api/v1/auth/me", headers=as_key))
    assert (await client.get("/api/v1/api-keys", headers=admin)).json()["items"][0]["revoked"] is True
    assert (await client.delete(f"/api/v1/api-keys/{body['id']}", headers=admin)).status_code == 204
    missing = await client.delete("/api/v1/api-keys/9999", headers=admin)
    assert missing.status_code == 404 and missing.json()["detail"]


async def test_only_signed_in_admins_manage_api_keys(authn, client):
    await authn.add_user("viewer@example.com", "viewer")
    await authn.add_user("sup@example.com", "supervisor")
    await authn.add_user("boss@example.com", "admin")
    for email in ("viewer@example.com", "sup@example.com"):
        headers = bearer(await login(client, email))
        refused = await client.post("/api/v1/api-keys", json={"name": "x", "role": "viewer"}, headers=headers)
        assert refused.status_code == 403 and refused.json()["detail"]
        assert (await client.get("/api/v1/api-keys", headers=headers)).status_code == 403
    admin = bearer(await login(client, "boss@example.com"))
    key = (await client.post("/api/v1/api-keys", json={"name": "x", "role": "admin"}, headers=admin)).json()
    as_admin_key = {"X-API-Key": key["key"]}
    assert (await client.get("/test/admin", headers=as_admin_key)).status_code == 200
    # An admin key may act in the tenant but not mint keys, nor revoke itself away from the admins' view.
    assert (await client.post("/api/v1/api-keys", json={"name": "y"}, headers=as_admin_key)).status_code == 403
    assert (await client.delete(f"/api/v1/api-keys/{key['id']}", headers=as_admin_key)).status_code == 403
    bad_role = await client.post("/api/v1/api-keys", json={"name": "x", "role": "root"}, headers=admin)
    assert bad_role.status_code == 422


async def test_api_keys_stay_in_their_tenant(authn, client):
    other = await authn.store.create_tenant("other")
    await authn.add_user("boss@example.com", "admin")
    await authn.add_user("rival@example.com", "admin", tenant_id=other.id)
    ours = bearer(await login(client, "boss@example.com"))
    theirs = bearer(await login(client, "rival@example.com"))
    key = (await client.post("/api/v1/api-keys", json={"name": "ours"}, headers=ours)).json()
    assert (await client.get("/api/v1/api-keys", headers=theirs)).json() == {"items": [], "next_cursor": None}
    assert (await client.delete(f"/api/v1/api-keys/{key['id']}", headers=theirs)).status_code == 404
    me = (await client.get("/api/v1/auth/me", headers={"X-API-Key": key["key"]})).json()
    assert me["tenant"] == {"id": authn.tenant_id, "name": "acme"} and me["role"] == "viewer"


# -- tenants ------------------------------------------------------------------------------------------


async def test_platform_admin_creates_a_tenant_whose_admin_can_log_in(authn, client):
    await authn.add_user("root@example.com", "admin", platform_admin=True)
    platform = bearer(await login(client, "root@example.com"))
    response = await client.post(
        "/api/v1/tenants",
        headers=platform,
        json={"name": "beta", "admin_email": "Boss@Beta.example", "admin_password": "beta passphrase"},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["tenant"]["name"] == "beta"
    assert created["admin"] == {
        "id": created["admin"]["id"],
        "email": "boss@beta.example",
        "role": "admin",
        "platform_admin": False,
    }

    new_admin = bearer(await login(client, "boss@beta.example", "beta passphrase"))
    me = (await client.get("/api/v1/auth/me", headers=new_admin)).json()
    assert me["tenant"] == {"id": created["tenant"]["id"], "name": "beta"} and me["role"] == "admin"
    # The new admin runs their tenant but creates no tenants.
    forbidden = await client.post(
        "/api/v1/tenants",
        headers=new_admin,
        json={"name": "gamma", "admin_email": "g@gamma.example", "admin_password": "gamma passphrase"},
    )
    assert forbidden.status_code == 403 and forbidden.json()["detail"]
    assert (await client.get("/api/v1/tenants", headers=new_admin)).status_code == 403

    listed = (await client.get("/api/v1/tenants", headers=platform)).json()["items"]
    assert [tenant["name"] for tenant in listed] == ["acme", "beta"]

    clashes = ({"name": "beta", "admin_email": "x@beta.example"}, {"name": "delta", "admin_email": "BOSS@beta.example"})
    for clash in clashes:
        conflict = await client.post("/api/v1/tenants", headers=platform, json={**clash, "admin_password": "x" * 12})
        assert conflict.status_code == 409 and conflict.json()["detail"]


async def test_tenant_creation_validates_its_input(authn, client):
    await authn.add_user("root@example.com", "admin", platform_admin=True)
    platform = bearer(await login(client, "root@example.com"))
    for body in (
        {"name": "beta", "admin_email": "not-an-email", "admin_password": "beta passphrase"},
        {"name": "beta", "admin_email": "b@beta.example", "admin_password": "short"},
        {"name": "", "admin_email": "b@beta.example", "admin_password": "beta passphrase"},
        {"name": "   ", "admin_email": "b@beta.example", "admin_password": "beta passphrase"},
    ):
        response = await client.post("/api/v1/tenants", headers=platform, json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"]
    assert len((await client.get("/api/v1/tenants", headers=platform)).json()["items"]) == 1


async def test_tenants_need_authentication(client):
    assert_unauthorized(await client.get("/api/v1/tenants"))
    assert_unauthorized(await client.post("/api/v1/tenants", json={}))


async def test_openapi_documents_the_paths_and_both_credentials(authn):
    schema = authn.app.openapi()
    assert {
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/me",
        "/api/v1/tenants",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{key_id}",
    } <= set(schema["paths"])
    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    token_request = schema["components"]["schemas"]["TokenRequest"]
    assert token_request["examples"]
