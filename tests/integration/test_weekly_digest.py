"""The weekly digest end to end, over each storage adapter, to an aiosmtpd server: users opt in
through the API, the digest goes to the tenant's active admins who did and to nobody else, once per
week whoever runs the job, and a week whose mail could not go out is sent once the claim is stale.

The job is run at a chosen moment (`run_once(now)`), two weeks ahead, so the devices registered
for the test count as silent unless they sent a frame shortly before.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson
import pytest

from services import cli
from services.notifications import digest as digest_module
from services.notifications.digest import WeeklyDigest, due_at, iso_week, send_digests_now
from services.notifications.email import EmailNotifier
from tests.helpers.alerting import SmtpSink
from tests.helpers.api import STORE_ADAPTERS, ApiHarness, Caller, api_harness, position

DUE = due_at(time.time() + 14 * 86400, weekday=0, hour=7)  # a Monday 07:00 UTC, a week or two ahead
NOW = DUE + 600  # the job's poll after the digest fell due


@pytest.fixture(params=STORE_ADAPTERS)
async def api(request: pytest.FixtureRequest, tmp_path: Path, smtp: SmtpSink) -> AsyncIterator[ApiHarness]:
    async with api_harness(
        tmp_path, adapter=request.param, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False
    ) as harness:
        yield harness


def plain(mail: EmailMessage) -> str:
    """The text part, with the newlines SMTP turned into CRLF made plain again."""
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


async def opt_in(api: ApiHarness, caller: Caller, weekly_digest: bool = True) -> Any:
    answer = await api.http.put("/api/v1/auth/me/digest", json={"weekly_digest": weekly_digest}, headers=caller.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_opted_in_admins_get_the_weeks_digest_once(api: ApiHarness, smtp: SmtpSink) -> None:
    tenant, other_tenant = await api.tenant("Acme"), await api.tenant("Globex")
    ann = await api.caller(tenant, "admin")  # asks for it
    bob = await api.caller(tenant, "admin")  # never asks
    cid = await api.caller(tenant, "supervisor")  # asks, but only admins receive it
    zoe = await api.caller(other_tenant, "admin")  # asks, in another tenant
    assert (await api.http.get("/api/v1/auth/me/digest", headers=ann.headers)).json() == {"weekly_digest": False}
    for caller in (ann, cid, zoe):
        assert await opt_in(api, caller) == {"weekly_digest": True}
    assert (await api.http.get("/api/v1/auth/me/digest", headers=ann.headers)).json() == {"weekly_digest": True}

    alice = await api.device(tenant, name="Alice")
    quiet = await api.device(tenant, name="Quiet")  # registered, never heard from: silent
    await api.store_positions(alice, [position(1, ts=int(NOW) - 3600)], received_at=NOW - 3600)  # heard lately
    for offset, kind in ((3600, "sos"), (7200, "fall"), (10800, "fall")):
        alert = await api.alert(alice, kind=kind, ts=int(DUE) - 86400 + offset)
        await api.store.acknowledge_alert(tenant, alert.id, by=ann.email)
    await api.alert(alice, kind="sos", ts=int(DUE) - 8 * 86400)  # before the week: not counted
    await api.alert(await api.device(other_tenant, name="Zed"), kind="tamper", ts=int(DUE) - 3600)

    job = WeeklyDigest(api.store, api.settings)
    assert await job.run_once(DUE - 60) == {}  # not due yet
    assert smtp.messages == []
    assert await job.run_once(NOW) == {tenant: "sent", other_tenant: "sent"}

    [mail] = smtp.to(ann.email)
    assert mail["Subject"] == f"[solewatch] Weekly digest {iso_week(NOW)} — Acme: 3 alerts"
    assert mail["X-Solewatch-Digest"] == iso_week(NOW)
    body = plain(mail)
    assert "Alerts: 3 (0 never acknowledged)" in body
    assert "  fall: 2\n" in body and "  sos: 1\n" in body
    assert f"Quiet ({quiet.imei}) — last seen never" in body and f"Alice ({alice.imei})" not in body.split("Silent")[1]
    assert "Weekly digest — Acme" in mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert smtp.to(bob.email) == [] and smtp.to(cid.email) == []
    [theirs] = smtp.to(zoe.email)
    assert "Globex: 1 alerts" in theirs["Subject"] and "tamper: 1" in plain(theirs)

    # The same week again: in this process, in another one (or after a restart), or at once from the CLI.
    assert await job.run_once(NOW + 3600) == {}
    assert await WeeklyDigest(api.store, api.settings).run_once(NOW + 7200) == {tenant: "taken", other_tenant: "taken"}
    assert await send_digests_now(api.store, EmailNotifier(api.settings), now=NOW + 9000) == {}
    assert len(smtp.messages) == 2

    # Opting out is audited like opting in, and stops the next week's.
    await opt_in(api, ann, False)
    audit = (await api.http.get("/api/v1/audit", params={"action": "user.update"}, headers=ann.headers)).json()
    anns = [(e["actor"]["id"], e["detail"]) for e in audit["items"] if e["target"]["id"] == str(ann.user_id)]
    assert anns == [(str(ann.user_id), {"weekly_digest": False}), (str(ann.user_id), {"weekly_digest": True})]
    assert await job.run_once(NOW + 7 * 86400) == {tenant: "nobody", other_tenant: "sent"}
    assert len(smtp.to(ann.email)) == 1 and len(smtp.to(zoe.email)) == 2


async def test_a_week_no_mail_could_reach_is_sent_once_its_claim_is_stale(
    api: ApiHarness, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await api.tenant("Acme")
    ann = await api.caller(tenant, "admin")
    await opt_in(api, ann)
    smtp.refuse.add(ann.email)

    job = WeeklyDigest(api.store, api.settings)
    assert await job.run_once(NOW) == {tenant: "failed"}
    assert await job.run_once(NOW + 300) == {}  # not before the claim may be stale
    assert await WeeklyDigest(api.store, api.settings).run_once(NOW + 300) == {tenant: "taken"}  # not stale yet

    smtp.refuse.clear()
    monkeypatch.setattr(digest_module, "STALE_CLAIM_S", 0.0)  # as if an hour had gone by
    assert await WeeklyDigest(api.store, api.settings).run_once(NOW + 3900) == {tenant: "sent"}
    assert len(smtp.to(ann.email)) == 1


async def test_the_cli_sends_this_weeks_digest_at_once(
    tmp_path: Path, smtp: SmtpSink, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_starttls": False}
    async with api_harness(tmp_path, **settings) as api:  # SQLite: the CLI opens the same file
        tenant = await api.tenant("Acme")
        ann = await api.caller(tenant, "admin")
        await opt_in(api, ann)
        await api.alert(await api.device(tenant, name="Alice"), ts=int(time.time()) - 3600)

        await cli._digest(api.settings, argparse.Namespace(now=True))
        # The JSON is the last line (the log may come before it).
        assert orjson.loads(capsys.readouterr().out.splitlines()[-1]) == {"sent": {"Acme": 1}}
        [mail] = smtp.to(ann.email)
        assert "Acme: 1 alerts" in mail["Subject"] and "  sos: 1\n" in plain(mail)

        await cli._digest(api.settings, argparse.Namespace(now=True))  # this week's went out already
        assert orjson.loads(capsys.readouterr().out.splitlines()[-1]) == {"sent": {}}
        assert len(smtp.messages) == 1


@pytest.mark.parametrize("value", ["true", 1, 0, None])
async def test_the_digest_choice_is_json_true_or_false(tmp_path: Path, value: object) -> None:
    async with api_harness(tmp_path) as api:
        admin = await api.caller(await api.tenant(), "admin")
        answer = await api.http.put("/api/v1/auth/me/digest", json={"weekly_digest": value}, headers=admin.headers)
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "weekly_digest"]
