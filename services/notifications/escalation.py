"""Escalation: if nobody acknowledges an alert in time, tell the next step's contacts.

Step 1 is told when the alert is raised (the dispatcher plans step 2 then);
each step through the channels it names (a `voice` step phones its contacts).
This loop takes the steps that fell due from the store, where the plan lives:
a restart delays a step by at most one check, and with several notifications
processes each step is claimed by exactly one. It stops at the first check
after the alert was acknowledged or resolved, and after the policy's last step.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter

from services.notifications.dispatcher import NotificationDispatcher
from shared.alerts import alert_to_api
from shared.logging import get_logger
from shared.store import NotificationsStore
from shared.store.escalation import ScheduledEscalation
from shared.webhook_events import alert_escalated_event

log = get_logger("solewatch.escalation")

escalations = Counter("escalation_steps_total", "Escalation steps taken", ["outcome"])


class Escalator:
    def __init__(self, store: NotificationsStore, dispatcher: NotificationDispatcher, *, check_interval: float = 1.0):
        self._store = store
        self._dispatcher = dispatcher
        self.check_interval = check_interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="escalation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.escalate_due(time.time())
            except asyncio.CancelledError:
                raise
            except Exception:  # the store is away: the plan waits there, try again next check
                log.exception("escalation_check_failed")
            await asyncio.sleep(self.check_interval)

    async def escalate_due(self, now: float) -> int:
        """Take every step due by `now`; how many were taken."""
        taken = 0
        for scheduled in await self._store.due_escalations(now):
            taken += await self._take(scheduled, now)
        return taken

    async def _take(self, scheduled: ScheduledEscalation, now: float) -> int:
        store = self._store
        alert = await store.alert(scheduled.tenant_id, scheduled.alert_id)
        policy = await store.escalation_policy(scheduled.tenant_id)
        step = policy.step(scheduled.step) if policy else None
        if alert is None or alert.status != "open" or step is None:
            # Acknowledged, resolved, or the policy no longer has this step: escalation ends here.
            if await store.claim_escalation(scheduled, next_due_at=None):
                escalations.labels("stopped").inc()
                log.info(
                    "escalation_stopped",
                    alert_id=scheduled.alert_id,
                    step=scheduled.step,
                    status=alert.status if alert else None,
                )
            return 0
        assert policy is not None
        following = policy.step(scheduled.step + 1)
        if not await store.claim_escalation(scheduled, next_due_at=now + step.wait_s if following else None):
            return 0  # another process took this step
        escalations.labels("taken").inc()
        # Owed before the step's notifications go: a stop after the claim loses both alike.
        taken_at = time.time()  # `now` may be a chosen moment (tests); the event is owed from this one
        await store.owe_webhook_event(
            alert_escalated_event(alert.tenant_id, alert_to_api(alert), step=scheduled.step, at=taken_at), at=taken_at
        )
        log.warning(
            "alert_escalated",
            alert_id=alert.id,
            step=scheduled.step,
            contact_ids=list(step.contact_ids),
            channels=list(step.channels),
        )
        await store.add_alert_event(
            alert.id,
            action="escalated",
            actor=None,
            detail={"step": scheduled.step, "contact_ids": list(step.contact_ids), "channels": list(step.channels)},
        )
        contacts = [c for c in await store.contacts(alert.tenant_id) if c.id in step.contact_ids]
        await self._dispatcher.notify(
            alert.tenant_id, alert_to_api(alert), contacts, step=scheduled.step, channels=step.channels
        )
        return 1
