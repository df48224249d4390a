"""Alarms become alerts: one `alarm` message in, at most one stored alert out."""

from __future__ import annotations

import orjson

from shared.bus import Message
from shared.logging import get_logger
from shared.store.alerts import AlertStore

log = get_logger("solewatch.alerts")


class AlertEngine:
    """Consumes `alarm` messages. Its only effect is the store write: the new
    alert reaches dashboards and notifiers through the outbox message stored
    with it, so a crash between the two cannot tell anyone of an alert that was
    not stored, or store one nobody hears of."""

    def __init__(self, store: AlertStore):
        self._store = store

    async def handle(self, message: Message) -> None:
        alarm = orjson.loads(message.payload)
        alert, created = await self._store.raise_alert_from_alarm(alarm)
        if not created:
            log.info("alarm_redelivered", alarm_id=alarm["alarm_id"], alert_id=alert.id, message_id=message.message_id)
            return
        log.warning(
            "alert_raised",
            alert_id=alert.id,
            tenant_id=alert.tenant_id,
            imei=alert.imei,
            kind=alert.kind,
            alarm_id=alarm["alarm_id"],
            lat=alert.lat,
            lon=alert.lon,
        )
