"""SQLite adapter, alerts and notifications (the AlertingStore port): its sub-ports' mixins, composed."""

from __future__ import annotations

from shared.store.sqlite_alerts import SqliteAlerts
from shared.store.sqlite_detections import SqliteDetections
from shared.store.sqlite_digest import SqliteDigest
from shared.store.sqlite_escalation import SqliteEscalation
from shared.store.sqlite_push import SqlitePush
from shared.store.sqlite_sms_replies import SqliteSmsReplies

_PARTS = (SqliteAlerts, SqliteEscalation, SqliteDetections, SqlitePush, SqliteSmsReplies, SqliteDigest)


class SqliteAlerting(SqliteAlerts, SqliteEscalation, SqliteDetections, SqlitePush, SqliteSmsReplies, SqliteDigest):
    SCHEMA = "".join(part.SCHEMA for part in _PARTS)
