"""How an alert was acknowledged is on its timeline (issue 14 item 4): `api` for an API
client, `dashboard` when the dashboard says so with `X-Solewatch-Client: dashboard`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.api import ApiHarness, api_harness


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiHarness]:
    async with api_harness(tmp_path) as harness:
        yield harness


@pytest.mark.parametrize(("client", "via"), [(None, "api"), ("dashboard", "dashboard"), ("curl", "api")])
async def test_the_timeline_says_how_an_alert_was_acknowledged(api: ApiHarness, client: str | None, via: str) -> None:
    tenant = await api.tenant()
    alert = await api.alert(await api.device(tenant, "356307042441013"))
    supervisor = await api.caller(tenant, "supervisor")
    headers = supervisor.headers | ({"X-Solewatch-Client": client} if client else {})

    acked = await api.http.post(f"/api/v1/alerts/{alert.id}/ack", headers=headers)
    assert acked.status_code == 200, acked.text

    detail = (await api.http.get(f"/api/v1/alerts/{alert.id}", headers=supervisor.headers)).json()
    [line] = [entry for entry in detail["timeline"] if entry["action"] == "acknowledged"]
    assert line["actor"] == supervisor.email
    assert line["detail"] == {"via": via}
