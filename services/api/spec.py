"""The OpenAPI spec of the whole HTTP API, without starting anything (`solewatch openapi`).

docs/openapi.json is this output, committed for partners who read the spec
before they run solewatch; a test keeps it equal to what the code serves.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from services.api.app import create_app
from services.context import ServiceContext
from shared.bus.memory import MemoryBus
from shared.cache.memory import MemoryCache
from shared.config import Settings
from shared.runtime import Runtime
from shared.store.audit import AuditEntry
from shared.store.sqlite import SqliteStore


class _NoCommands:
    async def send_command(
        self, *, device_id: int, cmd: int, args: bytes = b"", audit: AuditEntry | None = None
    ) -> int:
        raise RuntimeError("the spec generator sends no commands")

    async def revoke_device(self, imei: str) -> None:
        raise RuntimeError("the spec generator revokes no devices")


def openapi_spec() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="solewatch-spec-") as tmp:
        settings = Settings.model_validate({"data_dir": Path(tmp)})
        # Never opened: building the spec reads only the routes and models.
        context = ServiceContext(
            settings=settings,
            store=SqliteStore(settings.sqlite_path),
            cache=MemoryCache(),
            bus=MemoryBus(),
            commands=_NoCommands(),
        )
        app = create_app(context, Runtime([], lambda: settings), live_updates=False)
        spec: dict[str, Any] = app.other_asgi_app.openapi()
        return spec
