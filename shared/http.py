"""The HTTP surface every service has: /healthz, /readyz, /metrics, served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest

from shared.config import Settings
from shared.runtime import Runtime

# The *_created series double /metrics for no use on dashboards.
disable_created_metrics()


def health_app(title: str, runtime: Runtime) -> FastAPI:
    """A FastAPI app with the three operational endpoints; services add their routers."""
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        reasons = await runtime.readiness()
        not_ready = {name: why for name, why in reasons.items() if why}
        if not_ready:
            return JSONResponse({"status": "not ready", "detail": not_ready}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class _QuietSignalsServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the Runtime owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn as a runtime component."""

    def __init__(self, settings: Settings, app: FastAPI, *, name: str = "http"):
        self.name = name
        self.app = app
        self._config = uvicorn.Config(
            app, host=settings.bind, port=settings.http_port, log_config=None,
            access_log=False, lifespan="off", timeout_graceful_shutdown=5,
        )
        self._server = _QuietSignalsServer(self._config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        return self._server.servers[0].sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name=self.name)
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
                raise RuntimeError("HTTP server exited during start-up")
            await asyncio.sleep(0.01)

    async def drain(self) -> None:
        pass  # keep answering /healthz and /readyz (503 while draining) until close

    async def close(self) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task

    async def reload(self, settings: Settings) -> None:
        pass  # port and bind changes need a restart; nothing else here is configurable

    async def check_ready(self) -> str | None:
        return None if self._server.started else "not serving yet"
