"""MongoDB adapter, alerts and notifications (the AlertingStore port): its sub-ports' mixins, composed."""

from __future__ import annotations

from typing import ClassVar

from pymongo import IndexModel

from shared.store.mongo_alerts import MongoAlerts
from shared.store.mongo_detections import MongoDetections
from shared.store.mongo_digest import MongoDigest
from shared.store.mongo_escalation import MongoEscalation
from shared.store.mongo_push import MongoPush
from shared.store.mongo_sms_replies import MongoSmsReplies


class MongoAlerting(MongoAlerts, MongoEscalation, MongoDetections, MongoPush, MongoSmsReplies, MongoDigest):
    INDEXES: ClassVar[dict[str, list[IndexModel]]] = (
        MongoAlerts.INDEXES | MongoEscalation.INDEXES | MongoPush.INDEXES | MongoSmsReplies.INDEXES
    )
