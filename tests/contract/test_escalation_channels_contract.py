"""Each escalation step's channels (CONTRACT §6), kept by every store adapter."""

from __future__ import annotations

from shared.store import Store
from shared.store.escalation import EscalationStep


async def test_each_step_keeps_its_channels_and_a_step_naming_none_gets_sms_and_email(store: Store) -> None:
    acme = await store.ensure_tenant("acme")
    steps = [
        EscalationStep((1,), 60.0),
        EscalationStep((2, 3), 120.0, ("voice",)),
        EscalationStep((4,), 300.0, ("voice", "email", "sms")),
    ]
    await store.set_escalation_policy(acme, steps)
    policy = await store.escalation_policy(acme)
    assert policy is not None
    assert [step.channels for step in policy.steps] == [("sms", "email"), ("voice",), ("voice", "email", "sms")]
    assert policy.steps == tuple(steps)
