"""The notifications service: alarms become alerts, new alerts become notifications."""

from __future__ import annotations

from collections.abc import Callable

from services.context import ServiceContext
from services.notifications.detection import DetectionService
from services.notifications.digest import WeeklyDigest
from services.notifications.dispatcher import DispatchPolicy, NotificationDispatcher
from services.notifications.email import EmailNotifier
from services.notifications.engine import AlertEngine
from services.notifications.escalation import Escalator
from services.notifications.notifier import Notifier
from services.notifications.purge import RetentionPurger
from services.notifications.push import PushNotifier
from services.notifications.report_hours import ReportHours
from services.notifications.sms import SmsNotifier, sms_configured
from services.notifications.voice import VoiceNotifier, voice_configured
from services.notifications.webhooks import WebhookEvents, WebhookSender
from services.notifications.webhooks_positions import PositionBatcher, WebhookPositions
from shared.bus.topics import TOPIC_ALARM, TOPIC_ALERT, TOPIC_DEVICE_STATUS, TOPIC_TELEMETRY
from shared.config import Settings
from shared.logging import get_logger
from shared.store import NotificationsStore
from shared.store.sms_replies import SmsReplyStore

log = get_logger("solewatch.notifications")

NotifierFactory = Callable[[Settings, NotificationsStore], list[Notifier]]


def build_notifiers(settings: Settings, store: SmsReplyStore | None = None) -> list[Notifier]:
    """One notifier per configured channel: email with an SMTP host, SMS with a Twilio account
    (with `store`, SMS issue the codes a reply acknowledges with)."""
    notifiers: list[Notifier] = []
    if settings.smtp_host:
        notifiers.append(EmailNotifier(settings))
    if sms_configured(settings):
        notifiers.append(SmsNotifier(settings, codes=store))
    if voice_configured(settings):  # used only by escalation steps naming `voice`
        notifiers.append(VoiceNotifier(settings))
    return notifiers


class NotificationsService:
    """Runtime component. Subscribes at construction, so no message the outbox
    relay delivers at start-up finds it missing; place it before the relay in a
    process's component list, so that the relay's last pass at drain still
    reaches it."""

    name = "notifications"

    def __init__(self, context: ServiceContext, *, notifier_factory: NotifierFactory = build_notifiers):
        self._factory = notifier_factory
        self._store = context.store
        self.engine = AlertEngine(context.store)
        self.dispatcher = NotificationDispatcher(
            context.store,
            notifier_factory(context.settings, context.store),
            policy=DispatchPolicy.from_settings(context.settings),
            commands=context.commands,
        )
        self.escalator = Escalator(
            context.store, self.dispatcher, check_interval=context.settings.escalation_check_interval
        )
        self.detection = DetectionService(context)
        context.bus.subscribe("alert-engine", [TOPIC_ALARM], self.engine.handle)
        context.bus.subscribe("notification-dispatcher", [TOPIC_ALERT], self.dispatcher.handle)
        # Web Push in a consumer of its own: a slow push service never holds up SMS and email.
        self.push = PushNotifier(context)
        context.bus.subscribe("push-notifier", [TOPIC_ALERT], self.push.handle)
        # Partner webhooks likewise: queuing is one store write, sending runs in tasks of its own.
        self.webhooks = WebhookSender(context.store, context.settings, alerting_idle=self.dispatcher.idle)
        self.webhook_events = WebhookEvents(context.store, on_queued=self.webhooks.wake)
        context.bus.subscribe("webhook-events", [TOPIC_DEVICE_STATUS], self.webhook_events.on_device_status)
        context.bus.subscribe("webhook-wake", [TOPIC_ALERT], self.webhook_events.on_alert, broadcast=True)
        # The `positions` event: off the devices' ACK path, a dict lookup per message while nobody asks for it.
        self.webhook_positions = WebhookPositions(context.store, context.positions)
        context.bus.subscribe("webhook-positions", [TOPIC_TELEMETRY], self.webhook_positions.handle)
        self.position_batcher = PositionBatcher(context.store, self.webhooks.wake)
        self.retention = RetentionPurger(context.store, context.cache, context.settings)
        self.report_hours = ReportHours(context.store, context.cache, context.settings)
        self.digest = WeeklyDigest(context.store, context.settings)

    async def start(self) -> None:
        self.dispatcher.start()
        self.escalator.start()
        await self.detection.start()
        self.webhooks.start()
        self.position_batcher.start()
        self.retention.start()
        self.report_hours.start()
        self.digest.start()
        log.info("notifications_started", channels=self.dispatcher.channels)

    async def drain(self) -> None:
        await self.retention.drain()
        await self.report_hours.drain()
        await self.digest.drain()
        await self.detection.drain()
        await self.escalator.stop()
        await self.dispatcher.drain()
        await self.push.drain(self.dispatcher.policy.drain_timeout)
        await self.position_batcher.stop()  # what it has not batched stays pending for the next start
        await self.webhooks.drain(self.dispatcher.policy.drain_timeout)

    async def close(self) -> None:
        await self.retention.close()
        await self.report_hours.close()
        await self.digest.close()
        await self.detection.close()
        await self.escalator.stop()
        await self.dispatcher.close()
        await self.push.close()
        await self.position_batcher.stop()
        await self.webhooks.close()

    async def reload(self, settings: Settings) -> None:
        self.dispatcher.configure(self._factory(settings, self._store), DispatchPolicy.from_settings(settings))
        self.escalator.check_interval = settings.escalation_check_interval
        await self.detection.reload(settings)
        self.webhooks.settings = settings
        self.retention.configure(settings)
        self.report_hours.configure(settings)
        self.digest.configure(settings)
        log.info("notifications_reloaded", channels=self.dispatcher.channels)

    async def check_ready(self) -> str | None:
        # An SMTP outage must not take the process out of service: ingestion and
        # the API go on, and failures show in logs and notification metrics.
        return None
