"""Who may call what (CONTRACT §5: "viewer reads; supervisor also acknowledges, resolves and sends
commands; admin manages"): every operation of the app's own OpenAPI spec, called as each kind of
caller, against the table below.

Each call runs in a world of its own (fresh tenants, users, keys, device, alert...), so a call that
deletes or revokes something never changes what the next one finds. A row's `who` names who may
call it; every other caller gets 401 (no credentials) or 403 (a role, or an API key, that may not),
and another tenant's admin gets 404 for anything of this tenant named in the path.

The table must match the spec both ways: an operation without a row fails, and so does a row
naming an operation the spec lacks.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from argon2 import PasswordHasher

from services.authn.apikeys import hash_api_key, new_api_key
from services.authn.tokens import start_session
from shared.store.accounts import OneTimeToken, Role
from tests.helpers.api import ApiHarness, api_harness

Who = Literal[
    "anyone",  # no credentials needed (or the credential is in the body, the same for every caller)
    "user",  # any signed-in user or API key of the tenant
    "signed_in",  # any signed-in user, never an API key
    "supervisor",  # supervisors and admins, users or keys
    "signed_in_supervisor",  # supervisors and admins signed in, never an API key
    "admin",  # admins, users or keys
    "signed_in_admin",  # admins signed in, never an API key
    "platform_admin",  # solewatch's operators: no tenant's caller
    "twilio",  # only Twilio, which signs its requests: every caller here is refused
]
CALLERS = (
    "anonymous",
    "viewer",
    "supervisor",
    "admin",
    "viewer_key",
    "supervisor_key",
    "admin_key",
    "other_tenant_admin",
)
PASSWORD = "correct horse battery staple"
# Cheap parameters: verification reads them from the hash, whatever hasher the app uses.
PASSWORD_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
PUSH_KEYS = {
    "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
    "auth": "tBHItJI5svbpez7KI4CCXg",
}
_unique = itertools.count(1)


@dataclass
class World:
    """One tenant with a user and an API key of each role, its resources, and another tenant's admin."""

    headers: dict[str, dict[str, str]]
    ids: dict[str, Any]
    refresh_token: str
    user_ids: dict[str, int]


@dataclass(frozen=True)
class Row:
    method: str
    path: str  # as the spec names it; {params} are filled from the world
    who: Who
    ok: int  # the answer of a caller who may
    body: Callable[[World, str], Any] | None = None  # (world, caller) -> JSON body
    form: dict[str, str] | None = None  # a form body instead (Twilio's webhooks)
    foreign: bool = False  # names this tenant's resource: another tenant's admin gets `foreign_status`
    foreign_status: int = 404
    params: dict[str, str] = field(default_factory=dict)

    @property
    def operation(self) -> tuple[str, str]:
        return self.method, self.path


def fixed(body: Any) -> Callable[[World, str], Any]:
    return lambda world, caller: body


def fresh_email(world: World, caller: str) -> dict[str, Any]:
    return {"email": f"new{next(_unique)}@matrix.example", "name": "New colleague", "role": "viewer"}


CIRCLE = {"name": "Depot", "geometry": {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 250}}

TABLE: tuple[Row, ...] = (
    # -- auth (CONTRACT §2, §5) ---------------------------------------------------------------
    Row(
        "POST",
        "/api/v1/auth/token",
        "anyone",
        200,
        body=lambda w, c: {"email": w.ids["admin_email"], "password": PASSWORD},
    ),
    Row("POST", "/api/v1/auth/refresh", "anyone", 200, body=lambda w, c: {"refresh_token": w.refresh_token}),
    Row("POST", "/api/v1/auth/logout", "signed_in", 204),
    Row("GET", "/api/v1/auth/me", "user", 200),
    Row("GET", "/api/v1/auth/me/digest", "signed_in", 200),
    Row("PUT", "/api/v1/auth/me/digest", "signed_in", 200, body=fixed({"weekly_digest": True})),
    Row(
        "POST",
        "/api/v1/auth/accept-invite",
        "anyone",
        400,
        body=fixed({"token": "x" * 43, "password": "p" * 16}),
    ),
    Row(
        "POST",
        "/api/v1/auth/password",
        "signed_in",
        204,
        body=fixed({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
    ),
    Row(
        "POST",
        "/api/v1/auth/password-reset",
        "anyone",
        202,
        body=fixed({"email": "nobody@matrix.example"}),
    ),
    Row(
        "POST",
        "/api/v1/auth/password-reset/confirm",
        "anyone",
        400,
        body=fixed({"token": "x" * 43, "password": "p" * 16}),
    ),
    # -- tenants and API keys ---------------------------------------------------------------------
    Row("GET", "/api/v1/tenants", "platform_admin", 200),
    Row(
        "POST",
        "/api/v1/tenants",
        "platform_admin",
        201,
        body=fixed({"name": "newco", "admin_email": "boss@newco.example", "admin_password": PASSWORD}),
    ),
    Row("GET", "/api/v1/api-keys", "signed_in_admin", 200),
    Row("POST", "/api/v1/api-keys", "signed_in_admin", 201, body=fixed({"name": "dispatch", "role": "viewer"})),
    Row("DELETE", "/api/v1/api-keys/{key_id}", "signed_in_admin", 204, foreign=True),
    # -- users (§5) --------------------------------------------------------------------------------
    # Users are managed by signed-in admins only: a leaked key must not be able to make itself a user.
    Row("GET", "/api/v1/users", "signed_in_admin", 200),
    Row("POST", "/api/v1/users", "signed_in_admin", 201, body=fresh_email),
    Row("PATCH", "/api/v1/users/{user_id}", "signed_in_admin", 200, body=fixed({"name": "Renamed"}), foreign=True),
    Row("POST", "/api/v1/users/{user_id}/invitation", "signed_in_admin", 200, foreign=True),
    # -- devices and their history ------------------------------------------------------------------
    Row("GET", "/api/v1/devices", "user", 200),
    Row(
        "POST",
        "/api/v1/devices",
        "admin",
        201,
        body=lambda w, c: {"imei": f"49015420{next(_unique):07d}", "name": "New"},
    ),
    Row("GET", "/api/v1/devices/{imei}", "user", 200, foreign=True),
    Row("PATCH", "/api/v1/devices/{imei}", "admin", 200, body=fixed({"name": "Renamed"}), foreign=True),
    Row("DELETE", "/api/v1/devices/{imei}", "admin", 204, foreign=True),
    Row("POST", "/api/v1/devices/{imei}/token", "admin", 200, foreign=True),
    Row(
        "POST",
        "/api/v1/devices/{imei}/commands",
        "supervisor",
        202,
        body=fixed({"command": "vibrate"}),
        foreign=True,
    ),
    Row("GET", "/api/v1/devices/{imei}/commands", "user", 200, foreign=True),
    Row("GET", "/api/v1/devices/{imei}/positions", "user", 200, foreign=True),
    Row("GET", "/api/v1/devices/{imei}/activity", "user", 200, foreign=True),
    Row("GET", "/api/v1/devices/{imei}/heartbeats", "user", 200, foreign=True),
    Row("GET", "/api/v1/devices/{imei}/export", "admin", 200, foreign=True),
    Row("GET", "/api/v1/devices/{imei}/settings", "user", 200, foreign=True),
    Row(
        "PUT",
        "/api/v1/devices/{imei}/settings",
        "admin",
        200,
        body=fixed({"offline_after": 300, "shift": None}),
        foreign=True,
    ),
    # -- the tenant's data lifecycle (CONTRACT §8): another tenant's admin changes only its own ---------
    Row("GET", "/api/v1/tenant/settings", "user", 200),
    Row("PUT", "/api/v1/tenant/settings", "admin", 200, body=fixed({"telemetry_retention_days": 30})),
    # -- alerts ---------------------------------------------------------------------------------------
    Row("GET", "/api/v1/alerts", "user", 200),
    Row("GET", "/api/v1/alerts/{alert_id}", "user", 200, foreign=True),
    Row("POST", "/api/v1/alerts/{alert_id}/ack", "supervisor", 200, foreign=True),
    Row("POST", "/api/v1/alerts/{alert_id}/resolve", "supervisor", 200, foreign=True),
    # -- reports (CONTRACT §9) --------------------------------------------------------------------------
    Row(
        "GET",
        "/api/v1/reports/alerts",
        "user",
        200,
        params={"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"},
    ),
    Row(
        "GET",
        "/api/v1/reports/workers",
        "user",
        200,
        params={"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"},
    ),
    Row(
        "GET",
        "/api/v1/reports/activity",
        "user",
        200,
        params={"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z", "tz": "Europe/Paris"},
    ),
    Row(
        "GET",
        "/api/v1/devices/{imei}/trips",
        "user",
        200,
        foreign=True,
        params={"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"},
    ),
    # -- who is told ----------------------------------------------------------------------------------
    Row("GET", "/api/v1/contacts", "user", 200),
    Row("POST", "/api/v1/contacts", "admin", 201, body=fixed({"name": "Ana", "phone": "+33612345678"})),
    Row("DELETE", "/api/v1/contacts/{contact_id}", "admin", 204, foreign=True),
    Row("GET", "/api/v1/escalation-policy", "user", 200),
    # Another tenant's admin may set their own policy, not name this tenant's contact in it.
    Row(
        "PUT",
        "/api/v1/escalation-policy",
        "admin",
        200,
        body=lambda w, c: {"steps": [{"contacts": [w.ids["contact_id"]]}]},
        foreign=True,
        foreign_status=422,
    ),
    Row("GET", "/api/v1/geofences", "user", 200),
    Row("POST", "/api/v1/geofences", "admin", 201, body=fixed(CIRCLE)),
    Row("GET", "/api/v1/geofences/{geofence_id}", "user", 200, foreign=True),
    Row("DELETE", "/api/v1/geofences/{geofence_id}", "admin", 204, foreign=True),
    # -- audit (§5) -------------------------------------------------------------------------------------
    Row("GET", "/api/v1/audit", "admin", 200),
    # -- partner webhooks (§7): admins, API keys of the admin role included ----------------------------
    Row("GET", "/api/v1/webhook-endpoints", "admin", 200),
    Row(
        "POST",
        "/api/v1/webhook-endpoints",
        "admin",
        201,
        body=fixed({"url": "https://arc.example/hooks", "events": ["alert.raised"]}),
    ),
    Row("GET", "/api/v1/webhook-endpoints/{endpoint_id}", "admin", 200, foreign=True),
    Row("PATCH", "/api/v1/webhook-endpoints/{endpoint_id}", "admin", 200, body=fixed({"enabled": False}), foreign=True),
    Row("DELETE", "/api/v1/webhook-endpoints/{endpoint_id}", "admin", 204, foreign=True),
    Row("POST", "/api/v1/webhook-endpoints/{endpoint_id}/ping", "admin", 202, foreign=True),
    Row("GET", "/api/v1/webhook-endpoints/{endpoint_id}/deliveries", "admin", 200, foreign=True),
    Row("POST", "/api/v1/webhook-endpoints/{endpoint_id}/deliveries/{event_id}/retry", "admin", 202, foreign=True),
    # -- Web Push (§6): a browser of a signed-in supervisor --------------------------------------------
    Row(
        "POST",
        "/api/v1/push-subscriptions",
        "signed_in_supervisor",
        201,
        body=fixed({"endpoint": "https://push.example/s/1", "keys": PUSH_KEYS}),
    ),
    Row("GET", "/api/v1/push-subscriptions/vapid-public-key", "supervisor", 200),
    Row("DELETE", "/api/v1/push-subscriptions/{subscription_id}", "signed_in_supervisor", 204, foreign=True),
    # The notification's button: its token (in the body) is the credential, whoever presses it.
    Row("POST", "/api/v1/push/acknowledge", "anyone", 401, body=fixed({"token": "not-a-token"})),
    # -- Twilio's callbacks (§6): signed by Twilio, refused to anyone else --------------------------------
    Row("POST", "/api/v1/webhooks/twilio/sms", "twilio", 200, form={"From": "+33612345678", "Body": "1234"}),
    Row("POST", "/api/v1/webhooks/twilio/status", "twilio", 204, form={"MessageStatus": "delivered"}),
    Row("POST", "/api/v1/webhooks/twilio/voice", "twilio", 200, form={}),
    Row("POST", "/api/v1/webhooks/twilio/voice/gather", "twilio", 200, form={"Digits": "1"}),
    Row("POST", "/api/v1/webhooks/twilio/voice/status", "twilio", 204, form={"CallStatus": "completed"}),
)

# Outside the API's spec: anyone, always.
NON_API = ("/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/docs", "/")

ROLE_OF_CALLER = {
    "viewer": "viewer",
    "supervisor": "supervisor",
    "admin": "admin",
    "viewer_key": "viewer",
    "supervisor_key": "supervisor",
    "admin_key": "admin",
    "other_tenant_admin": "admin",
}
AT_LEAST = {
    "user": {"viewer", "supervisor", "admin"},
    "signed_in": {"viewer", "supervisor", "admin"},
    "supervisor": {"supervisor", "admin"},
    "signed_in_supervisor": {"supervisor", "admin"},
    "admin": {"admin"},
    "signed_in_admin": {"admin"},
    "platform_admin": set(),
}


def expected(row: Row, caller: str) -> int:
    if row.who == "anyone":
        return row.ok
    if row.who == "twilio":
        return 403  # nobody here signs as Twilio
    if caller == "anonymous":
        return 401
    if caller.endswith("_key") and row.who.startswith("signed_in"):
        return 403
    if ROLE_OF_CALLER[caller] not in AT_LEAST[row.who]:
        return 403
    if caller == "other_tenant_admin" and row.foreign:
        return row.foreign_status
    return row.ok


async def build_world(api: ApiHarness) -> World:
    tenant, other = await api.tenant(), await api.tenant()
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    user_ids: dict[str, int] = {}
    refresh_token = ""
    ids: dict[str, Any] = {}
    users: tuple[tuple[str, int, Role], ...] = (
        ("viewer", tenant, "viewer"),
        ("supervisor", tenant, "supervisor"),
        ("admin", tenant, "admin"),
        ("other_tenant_admin", other, "admin"),
    )
    for caller, tenant_id, role in users:
        email = f"{caller}{next(_unique)}@matrix.example"
        user = await api.store.create_user(tenant_id=tenant_id, email=email, password_hash=PASSWORD_HASH, role=role)
        pair = await start_session(api.settings, api.cache, user)
        headers[caller] = {"Authorization": f"Bearer {pair.access_token}"}
        user_ids[caller] = user.id
        if caller == "admin":
            refresh_token, ids["admin_email"] = pair.refresh_token, email
    roles: tuple[Role, ...] = ("viewer", "supervisor", "admin")
    for role in roles:
        key = new_api_key()
        await api.store.create_api_key(
            tenant_id=tenant,
            name=f"{role} key",
            prefix=key[:8],
            key_hash=hash_api_key(key),
            role=role,
        )
        headers[f"{role}_key"] = {"X-API-Key": key}
    spare = new_api_key()
    ids["key_id"] = (
        await api.store.create_api_key(
            tenant_id=tenant, name="spare", prefix=spare[:8], key_hash=hash_api_key(spare), role="viewer"
        )
    ).id
    device = await api.device(tenant)
    ids["imei"] = device.imei
    ids["alert_id"] = (await api.alert(device)).id
    ids["contact_id"] = (
        await api.store.add_contact(tenant_id=tenant, name="Bob", email=None, phone="+33612345679", kinds=("sos",))
    ).id
    ids["geofence_id"] = (
        await api.store.add_geofence(
            tenant_id=tenant, name="Yard", shape=CIRCLE["geometry"], devices=(), alert_on=("exit",)
        )
    ).id
    endpoint = await api.store.add_webhook_endpoint(
        tenant_id=tenant, url="https://arc.example/hooks", events=("ping",), description=None, secret="whsec_x"
    )
    ids["endpoint_id"], ids["event_id"] = endpoint.id, "evt_" + "0" * 24
    await api.store.queue_webhook_event(
        tenant_id=tenant, endpoint_ids=[endpoint.id], event_id=ids["event_id"], type="ping", payload=b"{}", at=1.0
    )
    ids["user_id"] = user_ids["viewer"]
    invited = await api.store.create_user(
        tenant_id=tenant,
        email=f"invited{next(_unique)}@matrix.example",
        password_hash="",
        role="viewer",
        invitation=OneTimeToken(secrets.token_bytes(32), time.time() + 3600),
    )
    ids["invited_user_id"] = invited.id
    ids["tenant_id"] = tenant
    return World(headers, ids, refresh_token, user_ids)


async def path_ids(api: ApiHarness, world: World, row: Row, caller: str) -> dict[str, Any]:
    ids = dict(world.ids)
    if row.path.endswith("/invitation"):  # only a user still invited can be sent a new link
        ids["user_id"] = world.ids["invited_user_id"]
    if "{subscription_id}" in row.path:
        # A subscription belongs to one user: the caller's own, when the caller is one of this tenant's users.
        owner = world.user_ids.get(caller) if caller in ("viewer", "supervisor", "admin") else world.user_ids["admin"]
        subscription = await api.store.add_push_subscription(
            tenant_id=world.ids["tenant_id"],
            user_id=owner or world.user_ids["admin"],
            endpoint=f"https://push.example/s/{next(_unique)}",
            p256dh=PUSH_KEYS["p256dh"],
            auth=PUSH_KEYS["auth"],
        )
        ids["subscription_id"] = subscription.id
    return ids


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    # Roles are enforced above the store: one adapter is enough here (the route tests cover both).
    async with api_harness(tmp_path) as harness:
        # Twilio configured, so its callbacks check signatures (unconfigured, they are 404 to everyone).
        twilio = {
            "twilio_account_sid": "AC" + "0" * 32,
            "twilio_auth_token": "matrix-token",
            "sms_from": "+15005550006",
            "public_url": "https://solewatch.example",
        }
        harness.context.settings = harness.settings.model_validate(harness.settings.model_dump() | twilio)
        yield harness


async def spec_operations(api: ApiHarness) -> set[tuple[str, str]]:
    spec = (await api.http.get("/api/v1/openapi.json")).json()
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item}


async def test_every_operation_of_the_spec_has_a_row_and_every_row_an_operation(api: ApiHarness) -> None:
    operations = await spec_operations(api)
    rows = {row.operation for row in TABLE}
    assert len(rows) == len(TABLE), "an operation has two rows"
    assert sorted(operations - rows) == [], "operations without a row in TABLE: add them"
    missing = sorted(row.operation for row in TABLE if row.operation not in operations)
    assert missing == [], "rows naming operations the spec lacks"


@pytest.mark.parametrize("row", TABLE, ids=lambda row: f"{row.method} {row.path}")
async def test_each_caller_gets_the_answer_its_role_allows(api: ApiHarness, row: Row) -> None:
    answers: dict[str, tuple[int, int]] = {}
    world = await build_world(api)
    for caller in CALLERS:
        if row.method != "GET":  # a change: each caller meets a world this row has not changed yet
            world = await build_world(api)
        path = row.path.format(**await path_ids(api, world, row, caller))
        request: dict[str, Any] = {"headers": world.headers[caller], "params": row.params}
        if row.body is not None:
            request["json"] = row.body(world, caller)
        elif row.form is not None:
            request["data"] = row.form
        # Each caller from an address of its own: the anonymous routes' throttling (three bad
        # tokens per address) must not answer for the callers before it.
        transport = httpx.ASGITransport(app=api.app, client=(f"192.0.2.{CALLERS.index(caller) + 1}", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            response = await http.request(row.method, path, **request)
        answers[caller] = (response.status_code, expected(row, caller))
        if response.status_code >= 400:
            assert "detail" in response.json() or row.who == "twilio", response.text
    wrong = {caller: got for caller, (got, want) in answers.items() if got != want}
    assert wrong == {}, f"answers (got, expected): {answers}"


@pytest.mark.parametrize("path", NON_API)
async def test_the_routes_outside_the_api_answer_anyone(api: ApiHarness, path: str) -> None:
    assert (await api.http.get(path)).status_code == 200
