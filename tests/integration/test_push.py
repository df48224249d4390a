"""Web Push end to end: pywebpush against a local push-service stand-in that checks the VAPID
header as a push service does and decrypts each message with the subscription's private key,
as the browser would; the API's subscriptions and the notification's Acknowledge button."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import http_ece
import httpx
import jwt
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.api import create_app
from services.authn.tokens import issue_access_token
from services.notifications.push import issue_ack_token
from shared.protocols.xsole import CommandCode
from shared.runtime import Runtime
from shared.store.accounts import User
from tests.helpers.alerting import Alerting, free_port

VAPID_HEADER = re.compile(r"^vapid t=(?P<t>[\w.-]+),\s*k=(?P<k>[\w-]+)$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class BrowserKeys:
    """What a browser's PushManager makes for a subscription: a P-256 key pair and an auth secret."""

    private: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    vapid_key: str
    claims: dict[str, Any]
    body: bytes


class PushService:
    """A push service's front door: refuses a bad VAPID header (401) as one would, records the
    rest, and answers each subscription path with the statuses queued for it (201 by default)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: dict[str, list[int]] = {}
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"

    def endpoint(self, name: str) -> str:
        return f"{self.origin}/push/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        match = VAPID_HEADER.match(request.headers.get("Authorization", ""))
        if match is None:
            return web.Response(status=401, text="no VAPID header")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(match["k"]))
        try:  # RFC 8292: ES256 by the key in k=, for this origin, not expired, with a contact
            claims = jwt.decode(
                match["t"],
                public,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["aud", "exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return web.Response(status=403, text=str(exc))
        self.received.append(
            Received(
                request.path,
                {k.lower(): v for k, v in request.headers.items()},
                match["k"],
                claims,
                await request.read(),
            )
        )
        queued = self.answers.get(request.path.rsplit("/", 1)[-1], [])
        return web.Response(status=queued.pop(0) if queued else 201)


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    service = PushService()
    app = web.Application()
    app.router.add_post("/push/{name}", service.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", service.port).start()
    try:
        yield service
    finally:
        await runner.cleanup()


def decrypt(received: Received, keys: BrowserKeys) -> dict[str, Any]:
    """What the browser does with a push: RFC 8291 aes128gcm with the subscription's private key."""
    assert received.headers["content-encoding"] == "aes128gcm"
    return orjson.loads(
        http_ece.decrypt(received.body, private_key=keys.private, auth_secret=keys.auth, version="aes128gcm")
    )


@dataclass
class Supervisor:
    user: User
    api: httpx.AsyncClient


@pytest.fixture
async def pushing(
    start_alerting: Callable[..., Awaitable[Alerting]],
) -> AsyncIterator[Callable[..., Awaitable[tuple[Alerting, httpx.AsyncClient]]]]:
    """The alerting harness (no SMS, no email) with the API over its store."""
    clients: list[httpx.AsyncClient] = []

    async def start(**overrides: Any) -> tuple[Alerting, httpx.AsyncClient]:
        app = await start_alerting(None, **overrides)
        asgi = create_app(app.context, Runtime([], lambda: app.settings), live_updates=False, auth=False)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi.other_asgi_app), base_url="http://api")
        clients.append(client)
        return app, client

    yield start
    for client in clients:
        await client.aclose()


async def user(app: Alerting, email: str, role: str = "supervisor") -> tuple[User, dict[str, str]]:
    tenant_id = await app.store.ensure_tenant("acme")
    account = await app.store.create_user(tenant_id=tenant_id, email=email, password_hash="x", role=role)  # type: ignore[arg-type]
    token = issue_access_token(app.settings, user=account, session_id=f"session-{account.id}")
    return account, {"Authorization": f"Bearer {token}"}


async def subscribe(api: httpx.AsyncClient, auth: dict[str, str], endpoint: str, keys: BrowserKeys) -> int:
    answer = await api.post(
        "/api/v1/push-subscriptions",
        headers=auth,
        json={"endpoint": endpoint, "keys": {"p256dh": keys.p256dh, "auth": b64url(keys.auth)}},
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


async def raise_sos(app: Alerting) -> None:
    device = await app.device()
    await app.alarm(device)
    await app.settle()
    await app.service.push.idle()


async def test_a_new_alert_is_pushed_encrypted_and_vapid_signed_to_each_supervisor_device(
    pushing: Callable[..., Awaitable[tuple[Alerting, httpx.AsyncClient]]], push_service: PushService
) -> None:
    app, api = await pushing()
    _, ana_auth = await user(app, "ana@acme.example")
    _, viewer_auth = await user(app, "vic@acme.example", role="viewer")
    phone, laptop = BrowserKeys(), BrowserKeys()
    await subscribe(api, ana_auth, push_service.endpoint("ana-phone"), phone)
    await subscribe(api, ana_auth, push_service.endpoint("ana-laptop"), laptop)
    refused = await api.post(
        "/api/v1/push-subscriptions",
        headers=viewer_auth,
        json={"endpoint": push_service.endpoint("vic"), "keys": {"p256dh": phone.p256dh, "auth": b64url(phone.auth)}},
    )
    assert refused.status_code == 403  # viewers cannot acknowledge, so they are not told

    await raise_sos(app)

    assert sorted(r.path for r in push_service.received) == ["/push/ana-laptop", "/push/ana-phone"]
    [alert] = await app.alerts()
    public_key = (await api.get("/api/v1/push-subscriptions/vapid-public-key", headers=ana_auth)).json()["public_key"]
    rest = (await api.get(f"/api/v1/alerts/{alert.id}", headers=ana_auth)).json()
    for received in push_service.received:
        keys = phone if received.path.endswith("phone") else laptop
        payload = decrypt(received, keys)
        assert payload["type"] == "alert" and payload["worker"] == "Simulated worker 3"
        assert payload["alert"] == {k: v for k, v in rest.items() if k != "timeline"}
        assert received.vapid_key == public_key  # signed with the key browsers subscribed with
        assert received.claims["aud"] == push_service.origin and received.claims["exp"] > time.time()
        assert received.claims["sub"].startswith(("mailto:", "https://"))
        assert int(received.headers["ttl"]) > 0 and received.headers["urgency"] == "high"
    # Someone else's keys cannot read it.
    with pytest.raises(http_ece.ECEException):
        decrypt(push_service.received[0], BrowserKeys())
    assert ("notified", {"channel": "push", "user": "ana@acme.example", "devices": 2}) in await app.actions(alert)


async def test_the_notification_acknowledges_its_alert_once_with_its_own_token_and_nothing_else(
    pushing: Callable[..., Awaitable[tuple[Alerting, httpx.AsyncClient]]], push_service: PushService
) -> None:
    app, api = await pushing()
    _, ana_auth = await user(app, "ana@acme.example")
    keys = BrowserKeys()
    await subscribe(api, ana_auth, push_service.endpoint("ana"), keys)
    await raise_sos(app)
    [received] = push_service.received
    ack = decrypt(received, keys)["ack"]
    assert ack["url"] == "api/v1/push/acknowledge"

    # The token opens nothing but its button: no reading, not even that alert.
    as_bearer = {"Authorization": f"Bearer {ack['token']}"}
    assert (await api.get("/api/v1/alerts", headers=as_bearer)).status_code == 401
    [alert] = await app.alerts()
    assert (await api.post(f"/api/v1/alerts/{alert.id}/ack", headers=as_bearer)).status_code == 401

    # Pressed twice (a retry from a flaky phone): acknowledged once, as Ana, via push; the insole told once.
    for _ in range(2):
        answer = await api.post("/api/v1/push/acknowledge", json={"token": ack["token"]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "acknowledged" and answer.json()["acknowledged_by"] == "ana@acme.example"
    acknowledged = [d for a, d in await app.actions(alert) if a == "acknowledged"]
    assert len(acknowledged) == 1 and acknowledged[0]["via"] == "push"
    # The audit log names Ana, the signed-in user whose browser got the notification, once.
    [entry] = [r.entry for r in await app.store.audit_log(alert.tenant_id) if r.entry.action == "alert.ack"]
    assert (entry.actor.type, entry.actor.label, entry.target_id, entry.detail) == (
        "user",
        "ana@acme.example",
        str(alert.id),
        {"via": "push"},
    )
    assert [cmd for _, cmd, _ in app.commands.sent] == [CommandCode.ALARM_ACKNOWLEDGED]
    assert await app.store.due_escalations(time.time() + 10**6) == []


async def test_an_ack_token_is_bound_to_its_alert_expires_and_dies_with_its_users_role(
    pushing: Callable[..., Awaitable[tuple[Alerting, httpx.AsyncClient]]],
) -> None:
    app, api = await pushing()
    ana, _ = await user(app, "ana@acme.example")
    device = await app.device()
    await app.alarm(device)
    await app.alarm(device, kind=2)
    await app.settle()
    first, second = sorted(await app.alerts(), key=lambda a: a.id)

    token = issue_ack_token(app.settings, alert_id=first.id, tenant_id=first.tenant_id, user_id=ana.id)
    assert (await api.post("/api/v1/push/acknowledge", json={"token": token})).status_code == 200
    statuses = {a.id: a.status for a in await app.alerts()}
    assert statuses == {first.id: "acknowledged", second.id: "open"}  # only the alert it was made for

    # Its claims cannot be edited to name another alert.
    head, body, signature = token.split(".")
    claims = orjson.loads(unb64url(body)) | {"alert": second.id}
    forged = ".".join([head, b64url(orjson.dumps(claims)), signature])
    assert (await api.post("/api/v1/push/acknowledge", json={"token": forged})).status_code == 401

    stale = issue_ack_token(
        app.settings,
        alert_id=second.id,
        tenant_id=second.tenant_id,
        user_id=ana.id,
        now=time.time() - app.settings.push_ack_token_ttl - 5,
    )
    answer = await api.post("/api/v1/push/acknowledge", json={"token": stale})
    assert answer.status_code == 401 and answer.json()["detail"] == "token expired"

    viewer, _ = await user(app, "vic@acme.example", role="viewer")
    demoted = issue_ack_token(app.settings, alert_id=second.id, tenant_id=second.tenant_id, user_id=viewer.id)
    assert (await api.post("/api/v1/push/acknowledge", json={"token": demoted})).status_code == 401
    assert {a.id: a.status for a in await app.alerts()}[second.id] == "open"


async def test_a_gone_subscription_is_deleted_and_a_failing_push_service_is_retried(
    pushing: Callable[..., Awaitable[tuple[Alerting, httpx.AsyncClient]]], push_service: PushService
) -> None:
    app, api = await pushing()
    _, ana_auth = await user(app, "ana@acme.example")
    gone_id = await subscribe(api, ana_auth, push_service.endpoint("gone"), BrowserKeys())
    busy_id = await subscribe(api, ana_auth, push_service.endpoint("busy"), BrowserKeys())
    push_service.answers = {"gone": [410], "busy": [503, 201]}

    await raise_sos(app)

    assert [r.path for r in push_service.received].count("/push/busy") == 2  # retried after the 503
    assert [s.id for s in await app.store.push_subscriptions(app.tenant_id)] == [busy_id]
    assert gone_id != busy_id


async def test_subscriptions_are_validated_and_removed_only_by_their_owner(
    pushing: Callable[..., Awaitable[tuple[Alerting, httpx.AsyncClient]]],
) -> None:
    app, api = await pushing(environment="production", jwt_secret="s" * 40)
    _, ana_auth = await user(app, "ana@acme.example")
    _, bob_auth = await user(app, "bob@acme.example")
    keys = BrowserKeys()
    body = {"keys": {"p256dh": keys.p256dh, "auth": b64url(keys.auth)}}
    for endpoint in ("http://push.example/x", "https://127.0.0.1/x", "https://localhost/x", "https://10.1.2.3/x"):
        answer = await api.post("/api/v1/push-subscriptions", headers=ana_auth, json=body | {"endpoint": endpoint})
        assert answer.status_code == 422, endpoint  # production: public https push services only
    bad_keys = {"endpoint": "https://push.example/x", "keys": {"p256dh": "abc", "auth": b64url(keys.auth)}}
    assert (await api.post("/api/v1/push-subscriptions", headers=ana_auth, json=bad_keys)).status_code == 422

    sub_id = await subscribe(api, ana_auth, "https://push.example/x", keys)
    assert (await api.delete(f"/api/v1/push-subscriptions/{sub_id}", headers=bob_auth)).status_code == 404
    assert (await api.delete(f"/api/v1/push-subscriptions/{sub_id}", headers=ana_auth)).status_code == 204
    assert await app.store.push_subscriptions(app.tenant_id) == []


async def test_in_production_pushes_never_reach_an_address_inside_whatever_the_endpoint_says(
    pushing: Callable[..., Awaitable[tuple[Alerting, httpx.AsyncClient]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SSRF: the server POSTs to endpoints supervisors give. Anyone's DNS name can resolve inside
    # (push.attacker.example, answered here as its owner's DNS would), and a subscription may
    # predate production mode: what counts is where the connection goes, so nothing may even
    # connect to loopback.
    getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *args, **kwargs: getaddrinfo(
            "127.0.0.1" if host == "push.attacker.example" else host, *args, **kwargs
        ),
    )
    connections: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(str(writer.get_extra_info("peername")))
        writer.close()

    inside = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = inside.sockets[0].getsockname()[1]
    try:
        app, api = await pushing(environment="production", jwt_secret="s" * 40)
        ana, ana_auth = await user(app, "ana@acme.example")
        api_refused = await api.post(
            "/api/v1/push-subscriptions",
            headers=ana_auth,
            json={
                "endpoint": f"https://127.0.0.1:{port}/push/x",
                "keys": {"p256dh": BrowserKeys().p256dh, "auth": "A" * 22},
            },
        )
        assert api_refused.status_code == 422
        await subscribe(api, ana_auth, f"https://push.attacker.example:{port}/push/by-name", BrowserKeys())
        for endpoint in (
            f"https://localhost:{port}/push/localhost",
            f"https://127.0.0.1:{port}/push/literal",
            f"http://127.0.0.1:{port}/push/plain",
        ):
            keys = BrowserKeys()
            await app.store.add_push_subscription(
                tenant_id=app.tenant_id, user_id=ana.id, endpoint=endpoint, p256dh=keys.p256dh, auth=b64url(keys.auth)
            )

        await raise_sos(app)

        assert connections == []
        assert len(await app.store.push_subscriptions(app.tenant_id)) == 4  # refused, not "gone"
    finally:
        inside.close()
        await inside.wait_closed()


async def test_a_push_service_that_hangs_holds_back_no_other_subscription(
    pushing: Callable[..., Awaitable[tuple[Alerting, httpx.AsyncClient]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ana's laptop's push service hangs until Bob's phone has had the alert. Pushed one after
    # the other, Bob would wait out the hang (the send timeout, then retries) and the laptop's
    # push would time out; pushed side by side, each is delivered at its first attempt.
    monkeypatch.setattr("services.notifications.push.SEND_TIMEOUT_S", 1)  # keeps the unfixed run short
    service = PushService()
    bob_told = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        if request.match_info["name"] == "bob":
            bob_told.set()
        else:
            await bob_told.wait()
        return await service.handle(request)

    web_app = web.Application()
    web_app.router.add_post("/push/{name}", handle)
    runner = web.AppRunner(web_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", service.port).start()
    try:
        app, api = await pushing()
        _, ana_auth = await user(app, "ana@acme.example")
        _, bob_auth = await user(app, "bob@acme.example")
        await subscribe(api, ana_auth, service.endpoint("ana-laptop"), BrowserKeys())  # the older one
        await subscribe(api, bob_auth, service.endpoint("bob"), BrowserKeys())

        await raise_sos(app)

        assert sorted(r.path for r in service.received) == ["/push/ana-laptop", "/push/bob"]  # once each
        [alert] = await app.alerts()
        told = sorted(d["user"] for a, d in await app.actions(alert) if a == "notified" and d["channel"] == "push")
        assert told == ["ana@acme.example", "bob@acme.example"]
    finally:
        await runner.cleanup()
