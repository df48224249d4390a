"""The escalation half of the storage port (shared/store/escalation.py), for every store adapter."""

from __future__ import annotations

import asyncio

from shared.store import Store
from shared.store.escalation import EscalationStep
from tests.contract.store_data import add_device, raised_alert

NOW = 1_800_000_000.0


async def test_a_policy_is_set_replaced_and_removed_per_tenant(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    other = await store.ensure_tenant("other")
    assert await store.escalation_policy(acme) is None

    steps = [EscalationStep((3, 1), 120.0), EscalationStep((7,), 300.0)]
    await store.set_escalation_policy(acme, steps)
    policy = await store.escalation_policy(acme)
    assert policy is not None and policy.steps == tuple(steps) and policy.step(2) == steps[1]
    assert policy.step(3) is None
    assert await store.escalation_policy(other) is None

    await store.set_escalation_policy(acme, [EscalationStep((9,), 60.0)])
    replaced = await store.escalation_policy(acme)
    assert replaced is not None and replaced.steps == (EscalationStep((9,), 60.0),)

    await store.set_escalation_policy(acme, [])
    assert await store.escalation_policy(acme) is None


async def test_a_plan_is_due_at_its_time_and_a_second_schedule_changes_nothing(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    await store.schedule_escalation(alert_id=alert.id, tenant_id=alert.tenant_id, step=2, due_at=NOW + 60)
    await store.schedule_escalation(alert_id=alert.id, tenant_id=alert.tenant_id, step=2, due_at=NOW + 5)  # redelivered

    assert await store.due_escalations(NOW + 59) == []
    [due] = await store.due_escalations(NOW + 60)
    assert (due.alert_id, due.tenant_id, due.step, due.due_at) == (alert.id, alert.tenant_id, 2, NOW + 60)


async def test_each_step_is_claimed_once_then_the_plan_moves_on_or_ends(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    await store.schedule_escalation(alert_id=alert.id, tenant_id=alert.tenant_id, step=2, due_at=NOW)
    [due] = await store.due_escalations(NOW)

    # Two notifications processes race for the same step: one wins.
    wins = await asyncio.gather(*(store.claim_escalation(due, next_due_at=NOW + 300) for _ in range(5)))
    assert sorted(wins) == [False] * 4 + [True]
    assert await store.due_escalations(NOW + 299) == []
    [step_3] = await store.due_escalations(NOW + 300)
    assert (step_3.step, step_3.due_at) == (3, NOW + 300)

    assert await store.claim_escalation(step_3, next_due_at=None)  # the last step: the plan ends
    assert await store.due_escalations(NOW + 10_000) == []
    assert not await store.claim_escalation(step_3, next_due_at=None)


async def test_a_cancelled_plan_is_never_due(store: Store) -> None:
    device = await add_device(store)
    alert = await raised_alert(store, device)
    await store.schedule_escalation(alert_id=alert.id, tenant_id=alert.tenant_id, step=2, due_at=NOW)
    await store.cancel_escalation(alert.id)
    assert await store.due_escalations(NOW + 1) == []
