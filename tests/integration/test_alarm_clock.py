"""Issue 12 item 7 end to end: an SOS from an insole whose clock reads 1970 is
an alert dated when it arrived, not in 1970, with the device's time kept in
its timeline."""

from __future__ import annotations

import time

from services.components import DEFAULT_TENANT
from shared.alerts.serialize import alert_to_api
from tests.integration.test_listener_ingest import eventually

IMEI = "356307042441013"


async def test_an_sos_with_ts_0_raises_an_alert_dated_on_arrival(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    tenant_id = await solewatch.store.ensure_tenant(DEFAULT_TENANT)
    sos = device.alarm(kind=1, ts=0)
    sent_at = time.time()

    await device.send(sos)
    assert await device.recv_ack_list(1) == [(sos.seq, 0)]

    async def raised() -> bool:
        return bool(await solewatch.store.alerts(tenant_id))

    await eventually(raised)
    [alert] = await solewatch.store.alerts(tenant_id)
    assert alert.kind == "sos"
    assert int(sent_at) <= alert.ts <= time.time()  # not 1970-01-01T00:00:00Z
    assert alert_to_api(alert)["ts"][:4] != "1970"
    [raised_line] = await solewatch.store.alert_timeline(tenant_id, alert.id)
    assert raised_line.detail["device_ts"] == "1970-01-01T00:00:00Z"
    await device.close()
