"""How the dashboard's files are served (no browser needed): caching headers,
versioned asset URLs, nothing from outside, and the API's own paths untouched.
Also which processes serve it: the all-in-one app and the distributed api
service do, the authn and wss services do not."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.api import create_app
from services.dashboard.serve import IMMUTABLE, STATIC_DIR
from shared.runtime import Runtime
from tests.helpers.api import ApiHarness, api_harness


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


def referenced_assets(index: str) -> list[str]:
    return re.findall(r'(?:src|href)="(assets/[^"]+)"', index)


async def test_index_is_revalidated_and_names_versioned_immutable_assets(api: ApiHarness) -> None:
    index = await api.http.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert index.headers["cache-control"] == "no-cache" and index.headers["etag"]
    assert "script-src 'self'" in index.headers["content-security-policy"]
    again = await api.http.get("/", headers={"If-None-Match": index.headers["etag"]})
    assert again.status_code == 304 and again.content == b""

    assets = referenced_assets(index.text)
    assert {"css/app.css", "js/app.js", "vendor/leaflet/leaflet.css"} <= {a.split("/", 2)[2] for a in assets}
    versions = {a.split("/")[1] for a in assets}
    assert len(versions) == 1
    for asset in assets:
        answer = await api.http.get("/" + asset)
        assert answer.status_code == 200, asset
        assert answer.headers["cache-control"] == IMMUTABLE == "public, max-age=31536000, immutable"
    script = await api.http.get("/" + next(a for a in assets if a.endswith("js/app.js")))
    assert script.headers["content-type"].startswith("text/javascript")

    stale = await api.http.get("/assets/0123456789abcdef/js/app.js")
    assert stale.status_code == 404 and stale.json() == {"detail": "Not Found"}
    outside = await api.http.get(f"/assets/{versions.pop()}/..%2F..%2Fserve.py")  # only listed files exist
    assert outside.status_code == 404


async def test_text_assets_are_compressed_for_slow_links(api: ApiHarness) -> None:
    index = (await api.http.get("/")).text
    leaflet = next(a for a in referenced_assets(index) if a.endswith("leaflet.css"))
    plain = await api.http.get("/" + leaflet, headers={"Accept-Encoding": "identity"})
    squeezed = await api.http.get("/" + leaflet, headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert squeezed.headers["content-encoding"] == "gzip" and squeezed.headers["vary"] == "Accept-Encoding"
    assert squeezed.content == plain.content  # httpx decoded it
    assert int(squeezed.headers["content-length"]) < len(plain.content) / 2
    assert squeezed.headers["etag"] != plain.headers["etag"]


async def test_nothing_is_fetched_from_the_internet_but_the_configured_tiles(api: ApiHarness) -> None:
    external = re.compile(
        r"""(?:src|href)\s*=\s*["']https?://|import\s*\(?\s*["']https?://|@import\s+url\(\s*["']?https?://"""
    )
    for path in STATIC_DIR.rglob("*"):
        if path.suffix in {".html", ".js", ".css"} and "vendor" not in path.parts:
            assert not external.search(path.read_text()), path
    config = (await api.http.get("/dashboard-config.json")).json()
    assert config["tile_url"] == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"  # the default
    assert config["low_battery_threshold"] == 15


async def test_the_tile_url_is_a_setting_and_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOLEWATCH_MAP_TILE_URL", "")
    async with api_harness(tmp_path) as harness:
        assert (await harness.http.get("/dashboard-config.json")).json()["tile_url"] is None


async def test_the_api_health_metrics_and_socketio_paths_still_answer(api: ApiHarness) -> None:
    caller = await api.caller(await api.tenant())
    assert (await api.http.get("/api/v1/devices", headers=caller.headers)).status_code == 200
    assert (await api.http.get("/api/v1/nothing-here")).json() == {"detail": "Not Found"}
    assert (await api.http.get("/healthz")).json() == {"status": "alive"}
    assert (await api.http.get("/readyz")).status_code == 200
    assert (await api.http.get("/metrics")).status_code == 200
    assert "/" not in (await api.http.get("/api/v1/openapi.json")).json()["paths"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.asgi), base_url="http://api.test") as whole:
        handshake = await whole.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert handshake.status_code == 200 and '"sid"' in handshake.text


async def test_the_api_service_serves_it_and_the_authn_and_wss_services_do_not(api: ApiHarness) -> None:
    runtime = Runtime([], lambda: api.settings)
    # services/distributed.py: whatever else each one serves, the dashboard goes with the REST part.
    for kwargs, serves in (
        ({"live_updates": False}, True),  # the api service
        ({"auth": False, "live_updates": False}, True),  # a REST-only api service
        ({"rest": False, "live_updates": False}, False),  # authn
        ({"auth": False, "rest": False}, False),
    ):  # wss
        app = create_app(api.context, runtime, **kwargs).other_asgi_app
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as http:
            assert ((await http.get("/")).status_code == 200) is serves, kwargs


def test_the_packaged_files_include_every_static_file() -> None:
    """pyproject's package data must carry the committed build, or `pip install .` serves nothing."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["services.dashboard"]
    package_dir = STATIC_DIR.parent
    covered = {p for pattern in patterns for p in package_dir.glob(pattern) if p.is_file()}
    assert {p for p in STATIC_DIR.rglob("*") if p.is_file()} <= covered
