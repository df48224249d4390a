"""The HTTP application: health endpoints, the REST API, its OpenAPI spec, and Socket.IO."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import socketio
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from services.api import (
    alerts,
    audit,
    commands,
    contacts,
    device_settings,
    devices,
    escalation,
    export,
    fleet,
    geofences,
    history,
    report_trips,
    reports,
    reports_alerts,
    tenant_settings,
    webhook_endpoints,
    webhooks,
    webhooks_sms,
    webhooks_voice,
)
from services.api import push as web_push
from services.api.errors import install_error_handlers
from services.authn.api import router as authn_router
from services.authn.key_limits import API_KEY_LIMITED, RateLimitHeaders
from services.authn.models import ErrorOut
from services.context import ServiceContext
from services.dashboard import mount_dashboard
from services.wss.server import create_socketio, subscribe_live_updates
from shared.http import health_app
from shared.runtime import Runtime

OPENAPI_URL = "/api/v1/openapi.json"
DOCS_URL = "/api/v1/docs"
DOCS_ASSETS_URL = "/api/v1/docs/assets"  # Swagger UI's files, from the swagger-ui-bundle-v2 package: no CDN

DESCRIPTION = """\
Lone-worker safety: XSole insoles, their positions, the alerts they raise and
who is told about them. Every resource belongs to the caller's tenant.

Authenticate with `Authorization: Bearer <access_token>` (from `POST
/api/v1/auth/token`) or, for partner integrations, `X-API-Key: <key>`.
Errors are JSON `{"detail": ...}`. Lists are paginated: pass the page's
`next_cursor` as `cursor` until it is null.

Each API key has a request budget, the same for every key of the server:
a burst of requests at once, refilled at a steady rate (by default 50 at once,
10 a second; docs/api.md). Every answer to a key's request carries
`RateLimit-Limit` (the burst), `RateLimit-Remaining` (requests it may make
now) and `RateLimit-Reset` (seconds until the whole burst is back); past the
budget the answer is 429 with `Retry-After` in seconds. Signed-in users are
not limited this way.

Live updates (`position`, `alert`, `device_status`) come over Socket.IO at
`/socket.io`, connecting with `auth={"token": "<access_token>"}`.
"""

TAGS = [
    {"name": "auth", "description": "tokens for users: log in, refresh, log out"},
    {"name": "tenants", "description": "tenants and their first admin (platform admins)"},
    {"name": "api-keys", "description": "keys for partner integrations (tenant admins)"},
    {
        "name": "devices",
        "description": "insoles: registration, live state, rename, disable, re-key, retire",
    },
    {"name": "commands", "description": "downlink commands to insoles, from queued to done or expired"},
    {"name": "history", "description": "a worker's positions, activity and heartbeats over time"},
    {"name": "alerts", "description": "alarms raised by insoles or detected by the server, and their handling"},
    {"name": "contacts", "description": "who is told about which kinds of alert"},
    {"name": "geofences", "description": "areas whose crossing raises geofence_exit or geofence_enter alerts"},
    {"name": "escalation", "description": "who is told next while nobody acknowledges an alert"},
    {"name": "reports", "description": "figures over a range for a safety manager: alerts, response times"},
    {"name": "audit", "description": "who changed what, and who read a worker's history (admins; read only)"},
    {"name": "push", "description": "Web Push: new alerts as notifications on supervisors' browsers and phones"},
    {
        "name": "webhook-endpoints",
        "description": "partner webhooks: where events are POSTed, signed, and what was sent (admins)",
    },
    {
        "name": "webhooks",
        "description": "callbacks from Twilio (delivery status, SMS replies, voice calls), signed by it",
    },
]

# Answers any authenticated operation may give besides its own.
_COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing, invalid or expired credentials"},
    403: {"model": ErrorOut, "description": "the caller's role does not allow this"},
    429: {"model": ErrorOut, **API_KEY_LIMITED},
    503: {"model": ErrorOut, "description": "storage unavailable, retry after `Retry-After` seconds"},
}


def create_app(
    context: ServiceContext,
    runtime: Runtime,
    *,
    live_updates: bool = True,
    auth: bool = True,
    rest: bool = True,
    sio: socketio.AsyncServer | None = None,
) -> socketio.ASGIApp:
    """The HTTP surface of a process; the FastAPI app is `.other_asgi_app`.

    All-in-one, a process serves all of it. In the distributed mode the authn
    service serves only `auth`, the api service only `rest`, and the wss
    service only Socket.IO with `live_updates` (and a pub/sub `sio` whose
    emits reach every wss process's clients). With `live_updates`, this
    process's bus consumers forward positions, alerts and device status to
    the Socket.IO clients (they subscribe now, before the outbox relay starts).
    """
    app = health_app("solewatch", runtime)
    app.title = "solewatch API"
    app.version = _version()
    app.description = DESCRIPTION
    app.openapi_tags = TAGS
    app.state.context = context
    install_error_handlers(app)
    app.add_middleware(RateLimitHeaders)  # an API key's budget on every answer to it (services/authn/key_limits.py)
    if auth:
        app.include_router(authn_router)
    if rest:
        for module in (
            devices,
            history,
            fleet,
            commands,
            device_settings,
            export,
            alerts,
            contacts,
            escalation,
            geofences,
            audit,
            tenant_settings,
            webhook_endpoints,
            reports_alerts,
            reports,
            report_trips,
        ):
            app.include_router(module.router, responses=_COMMON_ERRORS)
        app.include_router(webhooks.router)  # called by providers, who sign instead of logging in
        app.include_router(web_push.router, responses=_COMMON_ERRORS)
        app.include_router(web_push.ack_router)  # the notification's button: its token is the credential
        app.include_router(webhooks_sms.router)  # replies to alert SMS (CONTRACT §6)
        app.include_router(webhooks_voice.router)  # alert calls: script, key pressed, status (CONTRACT §6)
        mount_dashboard(app)  # the supervisor's web dashboard at / (services/dashboard)
    _serve_openapi(app)

    sio = sio or create_socketio(context)
    if live_updates:
        subscribe_live_updates(context, sio)
    return socketio.ASGIApp(sio, other_asgi_app=app, socketio_path="socket.io")


def _serve_openapi(app: FastAPI) -> None:
    # health_app turned FastAPI's own spec and docs routes off; serve them under the API prefix.
    app.openapi_url = OPENAPI_URL
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_common_answers(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace the schema

    @app.get(OPENAPI_URL, include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title="solewatch API",
            swagger_favicon_url=f"{DOCS_ASSETS_URL}/favicon-32x32.png",
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
        )

    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=swagger_ui_path), name="swagger-ui")


_VALIDATION_ERROR = {"$ref": "#/components/schemas/HTTPValidationError"}
_ERROR = {"$ref": "#/components/schemas/ErrorOut"}


def document_common_answers(spec: dict[str, Any]) -> dict[str, Any]:
    """Add to the generated spec the answers that come from the framework rather than a route.

    Every operation taking a body may get 400 (FastAPI's answer when reading
    the body itself fails; malformed JSON is a 422 listing `json_invalid`) and 413 (over the body limit,
    shared/http.py); every operation taking credentials may get 429 (an API key past its budget,
    services/authn/key_limits.py); every 422 has the validation list as its `detail`, also
    where a route only describes why it may answer 422.
    """
    for path in spec.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault(
                    "400",
                    {
                        "description": "the body could not be read (malformed JSON is a 422 listing `json_invalid`)",
                        "content": {"application/json": {"schema": _ERROR}},
                    },
                )
                responses.setdefault(
                    "413",
                    {
                        "description": "the body is larger than the server accepts",
                        "content": {"application/json": {"schema": _ERROR}},
                    },
                )
            if "security" in operation:  # takes an API key, so may find its budget spent
                responses["429"] = {**API_KEY_LIMITED, "content": {"application/json": {"schema": _ERROR}}}
            if "422" in responses:
                responses["422"]["content"] = {"application/json": {"schema": _VALIDATION_ERROR}}
    return spec


def _version() -> str:
    try:
        return version("solewatch")
    except PackageNotFoundError:
        return "0.0.0"
