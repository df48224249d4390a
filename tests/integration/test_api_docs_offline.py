"""/api/v1/docs names only files solewatch serves itself (Swagger UI from its Python package), so it
works on a site with no Internet access; tests/browser/test_api_docs.py renders it in chromium."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.api import ApiHarness, api_harness


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


async def test_the_docs_page_loads_swagger_ui_from_solewatch_itself(api: ApiHarness) -> None:
    page = await api.http.get("/api/v1/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {url.rsplit("/", 1)[-1] for url in urls} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    assert [url for url in urls if "://" in url or url.startswith("//")] == []  # nothing from another host
    for url in urls:
        asset = await api.http.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] in {
            "text/javascript",
            "application/javascript",
            "text/css",
            "image/png",
        }, url
    bundle = await api.http.get(next(url for url in urls if url.endswith("swagger-ui-bundle.js")))
    assert b"SwaggerUIBundle" in bundle.content
