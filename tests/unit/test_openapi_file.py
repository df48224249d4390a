"""docs/openapi.json, the spec partners read, is the spec the code serves."""

from __future__ import annotations

from pathlib import Path

import orjson

from services.api.spec import openapi_spec

SPEC_FILE = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_the_committed_spec_is_current() -> None:
    committed = orjson.loads(SPEC_FILE.read_bytes())
    assert committed == openapi_spec(), "docs/openapi.json is stale: run `solewatch openapi > docs/openapi.json`"


def test_the_spec_covers_the_contracts_core_paths() -> None:
    paths = openapi_spec()["paths"]
    for path, method in (
        ("/api/v1/auth/token", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/devices", "get"),
        ("/api/v1/devices", "post"),
        ("/api/v1/devices/{imei}", "get"),
        ("/api/v1/devices/{imei}/positions", "get"),
        ("/api/v1/alerts", "get"),
        ("/api/v1/alerts/{alert_id}/ack", "post"),
        ("/api/v1/alerts/{alert_id}/resolve", "post"),
        ("/api/v1/contacts", "get"),
        ("/api/v1/contacts", "post"),
    ):
        assert method in paths[path], f"{method.upper()} {path} missing from the spec"
