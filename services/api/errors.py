"""Every error as JSON `{"detail": ...}`, with no stack trace ever leaving the process.

One shape per status, as the OpenAPI spec documents it: 422's `detail` is
always the list of invalid fields (`[{"loc", "msg", "type"}]`), every other
status's is a message.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi import HTTPException as FastAPIHTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.cache import CacheUnavailable
from shared.logging import get_logger
from shared.store import StoreUnavailable

log = get_logger("solewatch.api")

STORE_RETRY_AFTER_S = 5


def install_error_handlers(app: FastAPI) -> None:
    # The decorator form: add_exception_handler types every handler as taking any Exception.
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(StoreUnavailable)(_store_unavailable)
    app.exception_handler(CacheUnavailable)(_cache_unavailable)
    app.add_middleware(CatchAll)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": [_field_error(error) for error in exc.errors()]}, status_code=422)


def _field_error(error: dict[str, Any]) -> dict[str, Any]:
    # Keep where and why; drop the rejected input, which may be a password.
    return {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}


def invalid_field(*loc: str | int, msg: str, type: str = "value_error") -> HTTPException:
    """A 422 naming one invalid field, shaped like the validation errors FastAPI raises."""
    return FastAPIHTTPException(422, [{"loc": list(loc), "msg": msg, "type": type}])  # its detail may be a list


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    detail: Any = exc.detail
    if exc.status_code == 422 and not isinstance(detail, list):
        detail = [{"loc": [], "msg": str(detail), "type": "value_error"}]
    headers = exc.headers
    if exc.status_code == 405:
        # Starlette's Allow names the methods of the one route it tried; a path
        # with a GET route and a POST route supports both.
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> list[str]:
    # Ask the router which methods it would route for this path (routers may nest, as included ones do).
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


async def _store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
    log.warning("store_unavailable", path=request.url.path, error=str(exc))
    return JSONResponse(
        {"detail": "storage is unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
    )


async def _cache_unavailable(request: Request, exc: CacheUnavailable) -> JSONResponse:
    # Sessions and rate limits live in the cache: without it no request can be
    # checked, so the answer is "retry later", not a 500 or a hang.
    log.warning("cache_unavailable", path=request.url.path, error=str(exc))
    return JSONResponse(
        {"detail": "sessions are unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
    )


class CatchAll:
    """Turn any unexpected exception into a logged 500 JSON answer.

    Starlette's own `Exception` handler answers too but then re-raises, which
    makes the server log the trace a second time; this middleware, just inside
    it, swallows the exception once it is logged.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            log.exception("request_failed", method=scope.get("method"), path=scope.get("path"))
            if started:  # too late for a clean answer: let the server drop the connection
                raise
            await JSONResponse({"detail": "internal server error"}, status_code=500)(scope, receive, send)
