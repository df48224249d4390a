"""Acknowledging an alert by replying to its SMS (CONTRACT §6), end to end: the real twilio
client sends the alert SMS to the local fake of Twilio, and the test posts the reply to
POST /api/v1/webhooks/twilio/sms the way Twilio does, form-encoded and signed with
twilio's RequestValidator over SOLEWATCH_PUBLIC_URL + path."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from services.api import create_app
from shared.protocols.xsole import CommandCode
from shared.runtime import Runtime
from shared.store import hash_device_token
from shared.store.alerts import Alert
from shared.store.escalation import EscalationStep
from tests.helpers.alerting import Alerting
from tests.helpers.fake_twilio import FakeTwilio

SENDER = "+15005550006"
PUBLIC_URL = "https://solewatch.example"
REPLY_URL = f"{PUBLIC_URL}/api/v1/webhooks/twilio/sms"
ANA, BOB, EVE = "+33612345678", "+447700900123", "+15557770000"
HOUR = 3600.0
CODE = re.compile(r" Reply (\d{4}) to acknowledge\.$")


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(account_sid="AC" + "5678abcd" * 4, auth_token="twilio-token-for-replies") as fake:
        yield fake


@pytest.fixture
async def texting(
    twilio: FakeTwilio, start_alerting: Callable[..., Awaitable[Alerting]]
) -> Callable[..., Awaitable[Alerting]]:
    async def start(**overrides: Any) -> Alerting:
        return await start_alerting(
            None,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            sms_from=SENDER,
            twilio_base_url=twilio.url,
            public_url=PUBLIC_URL,
            escalation_check_interval=HOUR,
            **overrides,
        )

    return start


class Phone:
    """Twilio's side of an inbound SMS: a signed form POST to the API (over ASGI)."""

    def __init__(self, app: Alerting, twilio: FakeTwilio):
        asgi = create_app(app.context, Runtime([], lambda: app.settings), live_updates=False, auth=False)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi.other_asgi_app), base_url="http://10.0.0.5:8000"
        )
        self.twilio = twilio

    async def reply(
        self,
        from_: str,
        body: str,
        *,
        sid: str | None = None,
        signature: str | None = None,
        auth_token: str | None = None,
    ) -> httpx.Response:
        form = {
            "MessageSid": sid or "SM" + secrets.token_hex(16),
            "AccountSid": self.twilio.account_sid,
            "From": from_,
            "To": SENDER,
            "Body": body,
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }
        validator = RequestValidator(auth_token or self.twilio.auth_token)
        headers = {
            "X-Twilio-Signature": signature if signature is not None else validator.compute_signature(REPLY_URL, form)
        }
        if signature == "":
            del headers["X-Twilio-Signature"]
        return await self.client.post("/api/v1/webhooks/twilio/sms", data=form, headers=headers)


def said(response: httpx.Response) -> str:
    """The text of TwiML's one <Message>."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(response.text)
    assert root.tag == "Response"
    [message] = root.findall("Message")
    return message.text or ""


def code_sent_to(twilio: FakeTwilio, phone: str) -> str:
    bodies = [r.body or "" for r in twilio.accepted if r.to == phone]
    assert bodies, f"no SMS to {phone}"
    match = CODE.search(bodies[-1])
    assert match, bodies[-1]
    return match.group(1)


def ack_commands(app: Alerting) -> list[tuple[int, int, bytes]]:
    return [sent for sent in app.commands.sent if sent[1] == CommandCode.ALARM_ACKNOWLEDGED]


async def sos(app: Alerting, *, escalate_to_bob: bool = False) -> tuple[Alert, dict[str, int]]:
    """An SOS texted to Ana (and, when asked, a second step for Bob 2 minutes later)."""
    device = await app.device()
    ana = await app.contact(device, "Ana", None, phone=ANA)
    bob = await app.contact(device, "Bob", None, phone=BOB)
    steps = (
        [EscalationStep((ana.id,), 120), EscalationStep((bob.id,), 300)]
        if escalate_to_bob
        else [EscalationStep((ana.id,), 120)]
    )
    await app.store.set_escalation_policy(device.tenant_id, steps)
    await app.alarm(device)
    await app.settle()
    [alert] = await app.alerts()
    return alert, {"ana": ana.id, "bob": bob.id}


async def test_a_reply_with_the_code_acknowledges_as_that_contact_and_stops_the_escalation(twilio, texting):
    app = await texting()
    alert, ids = await sos(app, escalate_to_bob=True)
    [message] = twilio.accepted
    assert message.to == ANA
    code = code_sent_to(twilio, ANA)

    answer = said(await Phone(app, twilio).reply(ANA, f" {code} "))

    assert f"#{alert.id}" in answer and "acknowledged" in answer and "SOS" in answer
    acked = await app.store.alert(alert.tenant_id, alert.id)
    assert acked is not None and acked.status == "acknowledged" and acked.acknowledged_by == "Ana"
    timeline = await app.actions(alert)
    assert ("acknowledged", {"via": "sms", "contact_id": ids["ana"]}) in timeline
    [entry] = [r.entry for r in await app.store.audit_log(alert.tenant_id) if r.entry.action == "alert.ack"]
    assert (entry.actor.type, entry.actor.id, entry.actor.label) == ("contact", str(ids["ana"]), "Ana")
    assert (entry.target_type, entry.target_id, entry.detail) == (
        "alert",
        str(alert.id),
        {"via": "sms", "contact_id": ids["ana"]},
    )
    await app.settle()
    assert len(ack_commands(app)) == 1  # the insole is told: help is coming
    # Escalation stopped: Bob's step never comes.
    assert await app.service.escalator.escalate_due(time.time() + 10 * HOUR) == 0
    await app.settle()
    assert [r.to for r in twilio.accepted] == [ANA]


async def test_the_same_reply_delivered_twice_acknowledges_once(twilio, texting):
    app = await texting()
    alert, _ = await sos(app)
    code = code_sent_to(twilio, ANA)
    phone = Phone(app, twilio)

    first = said(await phone.reply(ANA, code, sid="SM" + "ab" * 16))
    again = said(await phone.reply(ANA, code, sid="SM" + "ab" * 16))  # Twilio's retry
    later = said(await phone.reply(ANA, code))  # Ana sends it once more

    assert first == again and "acknowledged by you" in first
    assert "acknowledged" in later
    await app.settle()
    assert [action for action, _ in await app.actions(alert)].count("acknowledged") == 1
    assert [r.entry.action for r in await app.store.audit_log(alert.tenant_id)].count("alert.ack") == 1
    assert len(ack_commands(app)) == 1


@pytest.mark.parametrize("signature", ["", "bad", "other-token"])
async def test_an_unsigned_or_wrongly_signed_reply_is_refused(twilio, texting, signature):
    app = await texting()
    alert, _ = await sos(app)
    code = code_sent_to(twilio, ANA)
    phone = Phone(app, twilio)
    if signature == "other-token":
        response = await phone.reply(ANA, code, auth_token="not-the-account-token")
    else:
        response = await phone.reply(ANA, code, signature=signature or "")
    assert response.status_code == 403
    still = await app.store.alert(alert.tenant_id, alert.id)
    assert still is not None and still.status == "open"
    assert ack_commands(app) == []


async def test_a_reply_from_a_phone_not_notified_acknowledges_nothing(twilio, texting):
    app = await texting()
    alert, _ = await sos(app)  # Bob is a contact, but step 1 texts only Ana
    code = code_sent_to(twilio, ANA)
    phone = Phone(app, twilio)

    for sender in (BOB, EVE):
        answer = said(await phone.reply(sender, code))
        assert "no open solewatch alert" in answer and code not in answer

    still = await app.store.alert(alert.tenant_id, alert.id)
    assert still is not None and still.status == "open"
    assert ack_commands(app) == []


async def test_a_reply_without_a_code_lists_that_phones_open_alerts(twilio, texting):
    app = await texting()
    alert, _ = await sos(app)
    code = code_sent_to(twilio, ANA)

    answer = said(await Phone(app, twilio).reply(ANA, "ok who is it?"))

    assert code in answer and f"#{alert.id}" in answer and "Simulated worker 3" in answer
    still = await app.store.alert(alert.tenant_id, alert.id)
    assert still is not None and still.status == "open"


async def test_another_tenants_contact_cannot_acknowledge_with_a_code(twilio, texting):
    app = await texting()
    alert, _ = await sos(app)
    code = code_sent_to(twilio, ANA)
    # Another tenant, its own worker and contact (Eve), its own SOS texted to Eve.
    other = await app.store.ensure_tenant("globex")
    device = await app.store.add_device(
        tenant_id=other, imei="356307042441021", name="Globex worker", token_hash=hash_device_token(b"y")
    )
    await app.store.add_contact(tenant_id=other, name="Eve", email=None, phone=EVE, kinds=())
    await app.alarm(device)
    await app.settle()
    eve_code = code_sent_to(twilio, EVE)
    phone = Phone(app, twilio)

    answer = said(await phone.reply(EVE, code))  # Ana's code, from Eve's phone

    ours = await app.store.alert(alert.tenant_id, alert.id)
    assert ours is not None and ours.status == "open"
    assert f"#{alert.id}" not in answer and "Simulated worker 3" not in answer
    if eve_code != code:  # Eve is shown her own alert, and only hers
        assert eve_code in answer and "Globex worker" in answer
    assert ack_commands(app) == []


async def test_a_code_is_only_for_the_contact_it_was_sent_to(twilio, texting):
    # Ana's entry is removed and the number now belongs to Carla, who was never told of the alert.
    app = await texting()
    alert, ids = await sos(app)
    code = code_sent_to(twilio, ANA)
    assert await app.store.delete_contact(alert.tenant_id, ids["ana"])
    await app.store.add_contact(tenant_id=alert.tenant_id, name="Carla", email=None, phone=ANA, kinds=())

    answer = said(await Phone(app, twilio).reply(ANA, code))

    assert "acknowledged by you" not in answer
    still = await app.store.alert(alert.tenant_id, alert.id)
    assert still is not None and still.status == "open" and ack_commands(app) == []


async def test_a_namesake_replying_after_the_acknowledgement_is_told_who_was_first(twilio, texting):
    app = await texting()
    device = await app.device()
    first = await app.contact(device, "Sam", None, phone=ANA)
    namesake = await app.contact(device, "Sam", None, phone=BOB)
    await app.store.set_escalation_policy(device.tenant_id, [EscalationStep((first.id, namesake.id), 120)])
    await app.alarm(device)
    await app.settle()
    [alert] = await app.alerts()
    phone = Phone(app, twilio)

    assert "acknowledged by you" in said(await phone.reply(ANA, code_sent_to(twilio, ANA)))
    late = said(await phone.reply(BOB, code_sent_to(twilio, BOB)))

    assert "acknowledged by you" not in late and "already acknowledged by Sam" in late
    timeline = await app.actions(alert)
    assert [detail for action, detail in timeline if action == "acknowledged"] == [
        {"via": "sms", "contact_id": first.id}
    ]
