"""The dashboard as an installable app: its web app manifest and service worker.

Both are served from the dashboard's root, not under `/assets/<version>/`: a
service worker controls only the pages under its own path, and the manifest's
URL must stay the same across releases. Both name the current assets version
(the worker pre-caches that version's files as the offline shell), so they are
revalidated on every load like index.html, and a release installs a new worker.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, Request, Response

from services.dashboard.serve import ASSETS_PLACEHOLDER, REVALIDATE, DashboardFiles, StaticFile

PWA_DIR = Path(__file__).parent / "pwa"
MANIFEST_TYPE = "application/manifest+json"


def render_pwa(files: DashboardFiles, directory: Path = PWA_DIR) -> tuple[StaticFile, StaticFile]:
    """The manifest and the service worker for this version of the dashboard's files."""
    assets = f"assets/{files.version}"
    # The offline shell: the page and every asset of this version, relative to the worker's scope.
    shell = ["./", *(f"./{assets}/{name}" for name in sorted(files.assets) if Path(name).suffix)]  # no LICENSEs
    worker = (directory / "sw.js").read_text(encoding="utf-8")
    worker = worker.replace("{{VERSION}}", files.version).replace("{{SHELL}}", json.dumps(shell))
    worker = worker.replace(ASSETS_PLACEHOLDER, f"./{assets}")
    manifest = (directory / "manifest.webmanifest").read_text(encoding="utf-8").replace(ASSETS_PLACEHOLDER, assets)
    manifest_file = StaticFile.of(manifest.encode(), ".json")
    return (
        StaticFile(manifest_file.body, manifest_file.gzipped, MANIFEST_TYPE, manifest_file.etag),
        StaticFile.of(worker.encode(), ".js"),
    )


def mount_pwa(app: FastAPI, files: DashboardFiles, directory: Path = PWA_DIR) -> None:
    """Serve `/manifest.webmanifest` and `/sw.js` (scope `/`) beside the dashboard."""
    manifest, worker = render_pwa(files, directory)

    @app.api_route("/manifest.webmanifest", methods=["GET", "HEAD"], include_in_schema=False)
    async def web_app_manifest(request: Request) -> Response:
        return manifest.response(request, REVALIDATE)

    @app.api_route("/sw.js", methods=["GET", "HEAD"], include_in_schema=False)
    async def service_worker(request: Request) -> Response:
        return worker.response(request, REVALIDATE)
