"""Escalation: who is told at each step of an alert nobody has acknowledged yet.

A tenant has at most one policy: an ordered list of steps, each naming the
contacts to tell and how long to wait for an acknowledgement before the next
step. A raised alert tells step 1 at once; the store keeps, per open alert,
the next step and when it is due, so escalation survives restarts and, with
several notifications processes, each step is taken by exactly one of them
(`claim_escalation`). Without a policy every matching contact is told at step 1.

Each step also names the channels it uses: a step may phone its contacts
(`voice`) where SMS and email, the default, would not wake anyone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.store.audit import AuditEntry

MAX_STEPS = 10
STEP_CHANNELS: tuple[str, ...] = ("sms", "email", "voice")  # the channels a step may name (CONTRACT §6)
DEFAULT_CHANNELS: tuple[str, ...] = ("sms", "email")  # a step naming none, and every alert notified without a policy


def step_channels(channels: Sequence[str] | None) -> tuple[str, ...]:
    """The channels as stored: known ones, each once, in the order given; the default for None."""
    if channels is None:
        return DEFAULT_CHANNELS
    unknown = [channel for channel in channels if channel not in STEP_CHANNELS]
    if unknown or not channels:
        raise ValueError(
            f"a step's channels are a non-empty subset of {', '.join(STEP_CHANNELS)}; got {list(channels)}"
        )
    return tuple(dict.fromkeys(channels))


@dataclass(frozen=True, slots=True)
class EscalationStep:
    contact_ids: tuple[int, ...]
    wait_s: float  # how long to wait for an acknowledgement before the next step
    channels: tuple[str, ...] = DEFAULT_CHANNELS  # how its contacts are told

    def __post_init__(self) -> None:
        # Normalised here so that every store keeps, and every reader gets, the same tuple.
        object.__setattr__(self, "channels", step_channels(self.channels))

    def encoded(self) -> dict[str, object]:
        """The step as both stores keep it (JSON in SQLite, a sub-document in MongoDB)."""
        return {"contact_ids": list(self.contact_ids), "wait_s": self.wait_s, "channels": list(self.channels)}

    @classmethod
    def decoded(cls, doc: dict[str, Any]) -> EscalationStep:
        """The inverse of `encoded`."""
        return cls(tuple(doc["contact_ids"]), float(doc["wait_s"]), tuple(doc["channels"]))


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    tenant_id: int
    steps: tuple[EscalationStep, ...]
    updated_at: float

    def step(self, number: int) -> EscalationStep | None:
        """Step `number`, counted from 1, or None past the last."""
        return self.steps[number - 1] if 1 <= number <= len(self.steps) else None


@dataclass(frozen=True, slots=True)
class ScheduledEscalation:
    """The next step of one alert's escalation and when it is due (unix seconds)."""

    alert_id: int
    tenant_id: int
    step: int
    due_at: float


class EscalationStore(Protocol):
    async def escalation_policy(self, tenant_id: int) -> EscalationPolicy | None: ...
    async def set_escalation_policy(
        self, tenant_id: int, steps: Sequence[EscalationStep], *, audit: AuditEntry | None = None
    ) -> EscalationPolicy:
        """Replace the tenant's policy; no steps removes it."""

    async def schedule_escalation(self, *, alert_id: int, tenant_id: int, step: int, due_at: float) -> None:
        """Plan `step` for the alert, unless it already has a plan (a redelivered alert changes nothing)."""

    async def due_escalations(self, now: float, *, limit: int = 100) -> list[ScheduledEscalation]: ...

    async def claim_escalation(self, scheduled: ScheduledEscalation, *, next_due_at: float | None) -> bool:
        """True for the one caller that takes this step; the plan moves to the next step
        (due at `next_due_at`), or ends when it is None."""

    async def cancel_escalation(self, alert_id: int) -> None: ...
