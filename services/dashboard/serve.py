"""Serving the dashboard's files: versioned, immutable assets and a revalidated index.html.

Every file under `static/` but `index.html` is served at
`/assets/<version>/<path>`, where `<version>` hashes all of them: any change
changes every URL, so browsers keep assets for a year (`immutable`) and never
run a stale mix. `index.html` names that version and is revalidated on every
load (`no-cache` with an ETag), so a new release shows on the next reload. The
files are read once, with gzip copies of the text ones for slow links.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from shared.config import Settings
from shared.logging import get_logger

log = get_logger("solewatch.dashboard")

STATIC_DIR = Path(__file__).parent / "static"
INDEX = "index.html"
ASSETS_PLACEHOLDER = "{{ASSETS}}"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    "": "text/plain; charset=utf-8",  # LICENSE files
}
_COMPRESSIBLE = {".html", ".js", ".mjs", ".css", ".json", ".svg", ""}

# The page runs only its own scripts; tiles may come from any configured host.
INDEX_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob: http: https:; connect-src 'self' ws: wss:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, suffix: str) -> StaticFile:
        gzipped = gzip.compress(body, 9, mtime=0) if suffix in _COMPRESSIBLE and len(body) > 256 else None
        if gzipped is not None and len(gzipped) >= len(body):
            gzipped = None
        return cls(
            body,
            gzipped,
            _MEDIA_TYPES.get(suffix, "application/octet-stream"),
            f'"{hashlib.sha256(body).hexdigest()[:24]}"',
        )

    def response(self, request: Request, cache_control: str, headers: Mapping[str, str] | None = None) -> Response:
        gzipped = self.gzipped if "gzip" in request.headers.get("accept-encoding", "") else None
        # Each encoding is its own representation, hence its own strong ETag.
        etag = self.etag if gzipped is None else self.etag[:-1] + '-gz"'
        answer = {
            "Cache-Control": cache_control,
            "ETag": etag,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
            **(headers or {}),
        }
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=answer)
        if gzipped is None:
            return Response(self.body, media_type=self.media_type, headers=answer)
        return Response(gzipped, media_type=self.media_type, headers=answer | {"Content-Encoding": "gzip"})


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


@dataclass(frozen=True, slots=True)
class DashboardFiles:
    """The dashboard's files as served: the rendered index and the assets of one version."""

    version: str
    index: StaticFile
    assets: Mapping[str, StaticFile]

    @classmethod
    def load(cls, directory: Path = STATIC_DIR) -> DashboardFiles:
        paths = sorted(
            p for p in directory.rglob("*") if p.is_file() and p.name != INDEX and not p.name.startswith(".")
        )
        contents = {p.relative_to(directory).as_posix(): p.read_bytes() for p in paths}
        digest = hashlib.sha256()
        for name, body in contents.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(body).digest())
        version = digest.hexdigest()[:16]
        template = (directory / INDEX).read_text(encoding="utf-8")
        index = template.replace(ASSETS_PLACEHOLDER, f"assets/{version}")
        return cls(
            version=version,
            index=StaticFile.of(index.encode(), ".html"),
            assets={name: StaticFile.of(body, Path(name).suffix) for name, body in contents.items()},
        )


def mount_dashboard(app: FastAPI, directory: Path = STATIC_DIR) -> None:
    """Serve the dashboard on `app` at `/`, `/assets/...` and `/dashboard-config.json`.

    Only these paths are taken, so the API, health, metrics and Socket.IO
    routes stay as they are, whatever is registered after this.
    """
    try:
        files = DashboardFiles.load(directory)
    except OSError as exc:  # a broken install must not take the REST API down with it
        log.error("dashboard_files_missing", directory=str(directory), error=str(exc))
        return
    from services.dashboard.pwa import mount_pwa  # here: pwa.py builds on this module

    mount_pwa(app, files)  # the manifest and service worker that make it an installable app

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def dashboard_index(request: Request) -> Response:
        return files.index.response(request, REVALIDATE, INDEX_HEADERS)

    @app.api_route("/dashboard-config.json", methods=["GET", "HEAD"], include_in_schema=False)
    async def dashboard_config(request: Request) -> JSONResponse:
        return JSONResponse(client_config(request.app), headers={"Cache-Control": REVALIDATE})

    @app.api_route("/assets/{version}/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def dashboard_asset(version: str, path: str, request: Request) -> Response:
        asset = files.assets.get(path) if version == files.version else None
        if asset is None:
            raise HTTPException(404, "Not Found")
        return asset.response(request, IMMUTABLE)


def client_config(app: FastAPI) -> dict[str, Any]:
    """The settings the page needs: where map tiles come from, and the thresholds behind marker colours."""
    settings: Settings = app.state.context.settings
    tile_url = settings.map_tile_url.strip()
    return {
        "tile_url": tile_url or None,
        "tile_attribution": _attribution(tile_url),
        "low_battery_threshold": settings.low_battery_threshold,
        "offline_after_s": settings.offline_after,
    }


def _attribution(tile_url: str) -> str:
    if "openstreetmap.org" in tile_url:
        return "© OpenStreetMap contributors"
    return ""
