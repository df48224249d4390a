"""Web Push: every new alert shown on the supervisors' phones and desktops, with an Acknowledge button.

pywebpush encrypts each message to the browser's keys (RFC 8291, `aes128gcm`)
and signs it with our VAPID key (RFC 8292); the browser's push service
(FCM, Mozilla's autopush, Apple's) wakes the dashboard's service worker, which
shows the notification (services/dashboard/pwa/sw.js). The Acknowledge action
must work from a locked phone, where the dashboard's session may long have
expired, so each message carries an acknowledge token made for that one alert
and that one user: it acknowledges that alert and can do nothing else.

Push is a nudge beside SMS and email, never instead of them: it runs in its
own bus consumer and background tasks, so a slow or failing push service
delays no other channel. A redelivered alert may push twice; the notification's
tag (the alert id) makes the browser replace the first rather than show two.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from services.authn.tokens import ALGORITHM, InvalidToken, signing_secret
from services.context import ServiceContext
from services.notifications.metrics import notification_attempts, notifications_failed, notifications_sent
from shared.alerts.worker import worker_name
from shared.bus import Message
from shared.config import Settings
from shared.logging import get_logger
from shared.net_safety import public_url_problem, resolved_addresses_problem
from shared.store.accounts import User
from shared.store.push import PushStore, PushSubscription

log = get_logger("solewatch.push")

CHANNEL = "push"
ROLES_TOLD = frozenset({"admin", "supervisor"})  # those who may acknowledge
ACK_AUDIENCE = "solewatch:alert-ack"  # never "solewatch": an ack token is no access token
ACK_URL = "api/v1/push/acknowledge"  # relative to the dashboard's base, as the service worker calls it
PUSH_TTL_S = 3600  # a phone offline for less than this still gets the alert when it reconnects
GONE = frozenset({404, 410})  # the browser unsubscribed or the subscription expired
MAX_ATTEMPTS = 3
SEND_TIMEOUT_S = 10


# -- the VAPID key --------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_vapid_key(value: str) -> Vapid:
    """A VAPID key from PEM, or from base64url of the raw 32-byte key or of DER."""
    value = value.strip()
    if "-----BEGIN" in value:
        return Vapid.from_pem(value.encode())
    return Vapid.from_string(value)


def new_vapid_private_key() -> str:
    """A fresh P-256 private key as base64url of its raw 32 bytes (what browsers' tools print too)."""
    vapid = Vapid()
    vapid.generate_keys()
    return _b64url(vapid.private_key.private_numbers().private_value.to_bytes(32, "big"))


async def vapid_key(settings: Settings, store: PushStore) -> Vapid:
    """SOLEWATCH_VAPID_PRIVATE_KEY, else the key kept in the store (made on first use)."""
    if settings.vapid_private_key is not None:
        return parse_vapid_key(settings.vapid_private_key.get_secret_value())
    return parse_vapid_key(await store.keep_vapid_private_key(new_vapid_private_key()))


def vapid_public_key(vapid: Vapid) -> str:
    """The public key as browsers take it for `applicationServerKey`: base64url of the uncompressed point."""
    return _b64url(
        vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )


def vapid_subject(settings: Settings) -> str:
    """Whom a push service may contact about our pushes (RFC 8292's `sub`)."""
    if settings.vapid_subject:
        return settings.vapid_subject
    if settings.admin_email:
        return f"mailto:{settings.admin_email}"
    if settings.public_url and settings.public_url.startswith("https://"):
        return settings.public_url
    return "mailto:solewatch@localhost"


# -- the per-alert acknowledge token ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AckClaims:
    alert_id: int
    tenant_id: int
    user_id: int


def issue_ack_token(
    settings: Settings, *, alert_id: int, tenant_id: int, user_id: int, now: float | None = None
) -> str:
    """A token acknowledging alert `alert_id` as that user, valid `push_ack_token_ttl` seconds."""
    issued = int(time.time() if now is None else now)
    claims = {
        "aud": ACK_AUDIENCE,
        "purpose": "ack",
        "alert": alert_id,
        "tid": tenant_id,
        "sub": str(user_id),
        "iat": issued,
        "exp": issued + settings.push_ack_token_ttl,
    }
    return jwt.encode(claims, signing_secret(settings), algorithm=ALGORITHM)


def verify_ack_token(settings: Settings, token: str) -> AckClaims:
    """The alert and user an acknowledge token names; InvalidToken when forged, expired or of another kind."""
    try:
        claims = jwt.decode(
            token,
            signing_secret(settings),
            algorithms=[ALGORITHM],
            audience=ACK_AUDIENCE,
            options={"require": ["aud", "exp", "sub", "alert", "tid"]},
        )
        if claims.get("purpose") != "ack":
            raise ValueError("not an acknowledge token")
        return AckClaims(alert_id=int(claims["alert"]), tenant_id=int(claims["tid"]), user_id=int(claims["sub"]))
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token expired") from exc
    except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
        raise InvalidToken("invalid token") from exc


def may_be_told(user: User | None, tenant_id: int) -> bool:
    """A user still in that tenant whose role may acknowledge alerts."""
    return user is not None and user.tenant_id == tenant_id and user.role in ROLES_TOLD


# -- where pushes may go (production) -----------------------------------------------------------
#
# The server POSTs to whatever endpoint a supervisor registered, so in production
# it must reach public push services only, never an address inside (SSRF). The
# API refuses obvious cases at subscription, but a name can resolve to a private
# address (any DNS name an attacker controls; rebinding later), and a push
# service's answer could redirect anywhere: hence the checks at send time too,
# on every address actually connected to.


class PushEndpointRefused(aiohttp.ClientError):
    """A push endpoint production does not post to: plain http, or not a public address."""


def endpoint_problem(endpoint: str) -> str | None:
    """Why production refuses this push endpoint as written (scheme, IP literal, localhost), or None.
    Names are checked once resolved (PublicAddressesOnly)."""
    return public_url_problem(endpoint, what="endpoint")


class PublicAddressesOnly(AbstractResolver):
    """DNS answers that are all public, or a refusal (as for partner webhooks: shared/net_safety.py).
    Used by the push session's connector, so it applies to every connection, redirects and
    re-resolutions included."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        problem = resolved_addresses_problem(host, (result["host"] for result in found))
        if problem is not None:
            raise PushEndpointRefused(problem)
        return found

    async def close(self) -> None:
        await self._resolver.close()


async def _refuse_non_public_url(
    session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
) -> None:
    # IP literals never reach the resolver: checked here, before connecting.
    problem = endpoint_problem(str(params.url))
    if problem is not None:
        raise PushEndpointRefused(problem)


async def _refuse_redirect(
    session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestRedirectParams
) -> None:
    # Push services answer, they do not redirect; following one could lead to an IP literal inside.
    params.response.close()
    raise PushEndpointRefused(f"the push service redirected ({params.response.status})")


def push_session(settings: Settings) -> aiohttp.ClientSession:
    """The HTTP session pushes go through: in production, to public https addresses only."""
    if settings.environment != "production":
        return aiohttp.ClientSession()  # tests and local push services on loopback (CONTRACT §6)
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_refuse_non_public_url)
    trace.on_request_redirect.append(_refuse_redirect)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=PublicAddressesOnly()), trace_configs=[trace])


# -- sending ------------------------------------------------------------------------------------


class PushSendFailed(Exception):
    def __init__(self, message: str, *, status: int | None = None, permanent: bool = False):
        super().__init__(message)
        self.status = status
        self.permanent = permanent


class PushNotifier:
    """Bus consumer of `alert` messages: each new alert pushed to every subscription of the tenant's
    supervisors and admins. Subscriptions the push service says are gone (404, 410) are deleted."""

    def __init__(self, context: ServiceContext):
        self._context = context
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._vapid: Vapid | None = None

    @property
    def settings(self) -> Settings:
        return self._context.settings

    async def close(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def idle(self) -> None:
        """Until no push is in progress (tests)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def handle(self, message: Message) -> None:
        event = orjson.loads(message.payload)
        if event.get("event") != "created":
            return
        tenant_id, alert = event["tenant_id"], event["alert"]
        subscriptions = await self._context.store.push_subscriptions(tenant_id)
        if not subscriptions:
            return
        task = asyncio.create_task(self._push_alert(tenant_id, alert, subscriptions), name=f"push-{alert['id']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push_alert(self, tenant_id: int, alert: dict[str, Any], subscriptions: list[PushSubscription]) -> None:
        store = self._context.store
        try:
            self._vapid = self._vapid or await vapid_key(self.settings, store)
            stored = await store.alert(tenant_id, alert["id"])
            worker = None if stored is None else await worker_name(store, stored)
            users: dict[int, User | None] = {}
            sending: list[tuple[User, Awaitable[bool]]] = []
            for subscription in subscriptions:
                if subscription.user_id not in users:
                    users[subscription.user_id] = await store.user(subscription.user_id)
                user = users[subscription.user_id]
                if not may_be_told(user, tenant_id):
                    continue
                assert user is not None
                sending.append((user, self._push(subscription, self._payload(alert, tenant_id, user, worker))))
            # All at once (the session's connector bounds the connections): a push service that is
            # slow or down must not hold back the other supervisors' phones by its timeouts and retries.
            delivered = await asyncio.gather(*(push for _, push in sending), return_exceptions=True)
            told: dict[int, int] = {}
            for (user, _), outcome in zip(sending, delivered, strict=True):
                if isinstance(outcome, BaseException):  # the store failed that one (deleting it, say)
                    log.error("push_failed", alert_id=alert["id"], user_id=user.id, error=repr(outcome))
                elif outcome:
                    told[user.id] = told.get(user.id, 0) + 1
            for user_id, devices in told.items():
                user = users[user_id]
                await store.add_alert_event(
                    alert["id"],
                    action="notified",
                    actor=None,
                    detail={"channel": CHANNEL, "user": user.email if user else None, "devices": devices},
                )
        except asyncio.CancelledError:
            raise
        except Exception:  # the store failed us: this alert's pushes are lost, SMS and email are not
            log.exception("push_failed", alert_id=alert["id"])

    def _payload(self, alert: dict[str, Any], tenant_id: int, user: User, worker: str | None) -> bytes:
        """CONTRACT §6's {"type", "alert"}, plus the worker's name for the notification's title and the
        acknowledge token for its button."""
        token = issue_ack_token(self.settings, alert_id=alert["id"], tenant_id=tenant_id, user_id=user.id)
        return orjson.dumps(
            {"type": "alert", "alert": alert, "worker": worker, "ack": {"url": ACK_URL, "token": token}}
        )

    async def _push(self, subscription: PushSubscription, payload: bytes) -> bool:
        """One subscription, retried a little on network errors, 429 and 5xx; True when delivered."""
        fields = {
            "subscription_id": subscription.id,
            "user_id": subscription.user_id,
            "push_service": urlsplit(subscription.endpoint).netloc,
        }
        error = ""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await self._send(subscription, payload)
            except PushSendFailed as exc:
                error = str(exc)
                if exc.status in GONE:
                    await self._context.store.delete_push_subscription(subscription.tenant_id, subscription.id)
                    notification_attempts.labels(CHANNEL, "permanent_error").inc()
                    log.info("push_subscription_gone", **fields, status=exc.status)
                    return False
                permanent = exc.permanent or (exc.status is not None and exc.status < 500 and exc.status != 429)
                notification_attempts.labels(CHANNEL, "permanent_error" if permanent else "transient_error").inc()
                if permanent:
                    break
                if attempt < MAX_ATTEMPTS:
                    await asyncio.sleep(
                        min(
                            self.settings.notification_backoff * 2 ** (attempt - 1),
                            self.settings.notification_backoff_max,
                        )
                    )
                continue
            notification_attempts.labels(CHANNEL, "sent").inc()
            notifications_sent.labels(CHANNEL).inc()
            log.info("push_sent", **fields, attempts=attempt)
            return True
        notifications_failed.labels(CHANNEL).inc()
        log.warning("push_not_delivered", **fields, error=error)  # once, after the last attempt
        return False

    async def _send(self, subscription: PushSubscription, payload: bytes) -> None:
        if self._session is None:
            self._session = push_session(self.settings)
        assert self._vapid is not None
        try:
            await webpush_async(
                subscription_info={
                    "endpoint": subscription.endpoint,
                    "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
                },
                data=payload.decode(),
                vapid_private_key=self._vapid,
                vapid_claims={"sub": vapid_subject(self.settings)},  # aud and exp are filled in per endpoint
                content_encoding="aes128gcm",
                ttl=PUSH_TTL_S,
                headers={"Urgency": "high"},
                timeout=SEND_TIMEOUT_S,
                aiohttp_session=self._session,
            )
        except WebPushException as exc:
            status = exc.status_code
            raise PushSendFailed(f"push service answered {status}", status=status) from exc
        except PushEndpointRefused as exc:
            raise PushSendFailed(f"push endpoint refused: {exc}", permanent=True) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PushSendFailed(f"push service unreachable: {type(exc).__name__}: {exc}") from exc
