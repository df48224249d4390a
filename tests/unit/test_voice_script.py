"""What an alert call says: kind, worker, time and place in words a listener understands."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notifications.notifier import AlertNotice
from services.notifications.voice import spoken_place, spoken_time, voice_script
from shared.store.escalation import DEFAULT_CHANNELS, EscalationStep

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


def notice(
    kind: str = "sos",
    ts: str = "2026-11-24T03:42:10Z",
    lat: float | None = 43.6163,
    lon: float | None = 7.0553,
    name: str | None = "Alice",
) -> AlertNotice:
    alert = {"id": 7, "kind": kind, "ts": ts, "imei": "356307042441013", "lat": lat, "lon": lon}
    return AlertNotice(alert=alert, tenant_id=1, device_name=name)


def test_an_sos_is_read_as_a_sentence_with_a_spoken_time_and_place() -> None:
    assert voice_script(notice(), NOW) == (
        "This is solewatch, with an urgent alert. SOS alarm from Alice, today at 3:42 in the morning, UTC. "
        "Last known position: latitude 43.616 north, longitude 7.055 east."
    )


@pytest.mark.parametrize(
    ("ts", "spoken"),
    [
        ("2026-11-24T03:42:10Z", "today at 3:42 in the morning, UTC"),
        ("2026-11-23T15:05:00Z", "yesterday at 3:05 in the afternoon, UTC"),
        ("2026-11-20T21:17:00+01:00", "on Friday, November 20, at 8:17 in the evening, UTC"),
        ("2026-11-24T00:00:00Z", "today at midnight, UTC"),
        ("2026-11-24T12:00:00Z", "today at noon, UTC"),
    ],
)
def test_times_are_said_as_people_say_them(ts: str, spoken: str) -> None:
    assert spoken_time(datetime.fromisoformat(ts), NOW) == spoken


def test_places_have_no_signs_and_no_fix_is_said_plainly() -> None:
    assert spoken_place(-33.91, -70.6601) == "Last known position: latitude 33.91 south, longitude 70.66 west."
    assert "no GPS fix" in spoken_place(None, None)


def test_an_unnamed_worker_is_named_by_the_last_digits_of_the_insole() -> None:
    script = voice_script(notice("offline", lat=None, lon=None, name=None), NOW)
    assert script.startswith(
        "This is solewatch, with an urgent alert. The insoles of the worker with the insole "
        "ending in 1 0 1 3 stopped reporting, today"
    )
    assert "356307042441013" not in script


def test_a_step_keeps_known_channels_once_and_defaults_to_sms_and_email() -> None:
    assert EscalationStep((1,), 60).channels == DEFAULT_CHANNELS == ("sms", "email")
    assert EscalationStep((1,), 60, ("voice", "sms", "voice")).channels == ("voice", "sms")
    step = EscalationStep((1, 2), 60, ("voice",))
    assert EscalationStep.decoded(step.encoded()) == step  # as both stores keep it
    for wrong in [(), ("fax",)]:
        with pytest.raises(ValueError, match="non-empty subset"):
            EscalationStep((1,), 60, wrong)
