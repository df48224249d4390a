"""A local fake of Twilio's Messages and Calls APIs, for the real twilio client to talk to.

Serves `POST /2010-04-01/Accounts/{sid}/Messages.json` on 127.0.0.1 the way Twilio
does: form fields in, 201 JSON with a fresh `SM...` SID out, Twilio's JSON error
body (`code`, `message`, `status`) on failure. Records every request, can fail or
stall the next ones on demand, and plays Twilio's side of delivery status
callbacks: a form POST to the message's StatusCallback, signed with the account's
auth token (`X-Twilio-Signature`, computed by twilio's RequestValidator).

`POST /2010-04-01/Accounts/{sid}/Calls.json` takes a call (To, From, Url,
StatusCallback, StatusCallbackEvent...) and answers 201 with a `CA...` SID; the
test then plays the phone: `answer(call)` fetches the call's TwiML from its Url,
`press(twiml, digits)` posts the key to the Gather's action, `report_call(call,
status)` sends a call status callback, all signed as Twilio signs them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]


@dataclass
class ApiRequest:
    """One request to Twilio's REST API, recorded on arrival."""

    account_sid: str
    form: dict[str, str]
    authorization: str | None
    answered: int | None = None  # the HTTP status it got, once answered
    sid: str | None = None  # the message's or call's SID when it was accepted

    @property
    def to(self) -> str | None:
        return self.form.get("To")

    @property
    def from_(self) -> str | None:
        return self.form.get("From")

    @property
    def status_callback(self) -> str | None:
        return self.form.get("StatusCallback")

    @property
    def credentials(self) -> tuple[str, str] | None:
        """The Basic auth user and password it carried."""
        if not self.authorization or not self.authorization.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(self.authorization[6:]).decode().partition(":")
        return user, password


@dataclass
class SmsRequest(ApiRequest):
    """A request to the Messages API."""

    @property
    def body(self) -> str | None:
        return self.form.get("Body")


@dataclass
class CallRequest(ApiRequest):
    """A request to the Calls API."""

    status_callback_events: list[str] = field(default_factory=list)  # StatusCallbackEvent, which Twilio takes repeated

    @property
    def url(self) -> str | None:
        return self.form.get("Url")


@dataclass
class _Failure:
    status: int
    code: int | None
    message: str


@dataclass
class FakeTwilio:
    """`async with FakeTwilio(sid, token) as twilio:` then point the client at `twilio.url`."""

    account_sid: str = "AC" + "0" * 32
    auth_token: str = "fake-auth-token"
    requests: list[SmsRequest] = field(default_factory=list)
    calls: list[CallRequest] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _delays: list[float] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int = 0
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    # -- what a test sets up ------------------------------------------------------------------

    def fail_next(
        self, count: int = 1, *, status: int = 500, code: int | None = None, message: str = "fake failure"
    ) -> None:
        """Answer the next `count` requests with this error (400 with code 21211: invalid number)."""
        self._failures.extend(_Failure(status, code, message) for _ in range(count))

    def stall_next(self, count: int = 1, *, seconds: float = 5.0) -> None:
        """Wait `seconds` before answering the next `count` requests (they still succeed)."""
        self._delays.extend(seconds for _ in range(count))

    # -- what a test reads ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def accepted(self) -> list[SmsRequest]:
        """The messages Twilio took (answered 201)."""
        return [r for r in self.requests if r.sid is not None]

    @property
    def accepted_calls(self) -> list[CallRequest]:
        """The calls Twilio took (answered 201)."""
        return [c for c in self.calls if c.sid is not None]

    # -- Twilio calling back ------------------------------------------------------------------

    def signature(self, url: str, form: dict[str, str], *, auth_token: str | None = None) -> str:
        """X-Twilio-Signature of a callback, as Twilio computes it."""
        return str(RequestValidator(auth_token or self.auth_token).compute_signature(url, form))

    def status_callback_form(self, message_sid: str, status: str, error_code: str | None = None) -> dict[str, str]:
        """The form of a delivery status callback, with the fields Twilio sends."""
        form = {
            "AccountSid": self.account_sid,
            "MessageSid": message_sid,
            "SmsSid": message_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "ApiVersion": "2010-04-01",
        }
        if error_code is not None:
            form["ErrorCode"] = error_code
        return form

    async def send_status_callback(
        self,
        url: str,
        *,
        message_sid: str,
        status: str,
        error_code: str | None = None,
        signature: str | None = None,
        signed: bool = True,
        deliver_to: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """POST a delivery status callback for `url`, signed unless `signed` is False (or with the
        given `signature`). It goes to `deliver_to` when given (where a proxy in front of `url`
        would pass it on), through `client` when given (an ASGI transport), else over HTTP."""
        form = self.status_callback_form(message_sid, status, error_code)
        headers = {"User-Agent": "TwilioProxy/1.1"}
        if signed:
            headers["X-Twilio-Signature"] = signature or self.signature(url, form)
        if client is not None:
            return await client.post(deliver_to or url, data=form, headers=headers)
        async with httpx.AsyncClient() as own:
            return await own.post(deliver_to or url, data=form, headers=headers)

    async def report(self, message_sid: str, status: str, **options: Any) -> httpx.Response:
        """Call back the StatusCallback the message was sent with."""
        [request] = [r for r in self.requests if r.sid == message_sid]
        assert request.status_callback, "the message was sent without a StatusCallback"
        return await self.send_status_callback(
            request.status_callback, message_sid=message_sid, status=status, **options
        )

    # -- playing the phone of a call ---------------------------------------------------------------

    def call_form(self, call: CallRequest, **fields: str) -> dict[str, str]:
        """The fields Twilio posts with each request about a call."""
        assert call.sid
        return {
            "AccountSid": self.account_sid,
            "CallSid": call.sid,
            "From": call.from_ or "",
            "To": call.to or "",
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
            **fields,
        }

    async def _post_signed(
        self, url: str, form: dict[str, str], *, signed: bool, deliver_to: str | None, client: httpx.AsyncClient | None
    ) -> httpx.Response:
        headers = {"User-Agent": "TwilioProxy/1.1"}
        if signed:
            headers["X-Twilio-Signature"] = self.signature(url, form)
        if client is not None:
            return await client.post(deliver_to or url, data=form, headers=headers)
        async with httpx.AsyncClient() as own:
            return await own.post(deliver_to or url, data=form, headers=headers)

    async def answer(
        self, call: CallRequest, *, signed: bool = True, url: str | None = None, client: httpx.AsyncClient | None = None
    ) -> httpx.Response:
        """The callee picked up: Twilio fetches the call's TwiML (or that of `url`, a Redirect's)."""
        target = url or call.url
        assert target, "the call was placed without a Url"
        return await self._post_signed(
            target, self.call_form(call, CallStatus="in-progress"), signed=signed, deliver_to=None, client=client
        )

    async def press(
        self,
        call: CallRequest,
        twiml: str,
        digits: str,
        *,
        signed: bool = True,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """The callee pressed `digits` while `twiml`'s Gather listened: Twilio posts them to its action."""
        gather = ET.fromstring(twiml).find("Gather")
        assert gather is not None and gather.get("action"), f"no Gather with an action in {twiml}"
        form = self.call_form(call, CallStatus="in-progress", Digits=digits)
        return await self._post_signed(str(gather.get("action")), form, signed=signed, deliver_to=None, client=client)

    async def report_call(
        self,
        call: CallRequest,
        status: str,
        *,
        signed: bool = True,
        client: httpx.AsyncClient | None = None,
        **fields: str,
    ) -> httpx.Response:
        """A call status callback (in-progress, completed, busy, no-answer, failed) to its StatusCallback."""
        assert call.status_callback, "the call was placed without a StatusCallback"
        return await self._post_signed(
            call.status_callback,
            self.call_form(call, CallStatus=status, **fields),
            signed=signed,
            deliver_to=None,
            client=client,
        )

    # -- the server ------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account_sid}/Messages.json", self._create_message)
        app.router.add_post("/2010-04-01/Accounts/{account_sid}/Calls.json", self._create_call)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        self._closing.set()  # stalled answers end now
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeTwilio:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _create_message(self, request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]
        form = {key: str(value) for key, value in (await request.post()).items()}
        received = SmsRequest(account_sid, form, request.headers.get("Authorization"))
        self.requests.append(received)
        if self._delays:
            delay = self._delays.pop(0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
        if received.credentials != (self.account_sid, self.auth_token) or account_sid != self.account_sid:
            return self._answer(received, _Failure(401, 20003, "Authenticate"))
        if self._failures:
            return self._answer(received, self._failures.pop(0))
        if not form.get("To") or not form.get("From") or not form.get("Body"):
            return self._answer(received, _Failure(400, 21604, "A 'To', 'From' and 'Body' are required"))
        received.answered, received.sid = 201, "SM" + secrets.token_hex(16)
        sid = received.sid
        return web.json_response(
            {
                "sid": sid,
                "account_sid": account_sid,
                "to": form["To"],
                "from": form["From"],
                "body": form["Body"],
                "status": "queued",
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json",
            },
            status=201,
        )

    async def _create_call(self, request: web.Request) -> web.Response:
        account_sid = request.match_info["account_sid"]
        posted = await request.post()
        form = {key: str(value) for key, value in posted.items()}
        received = CallRequest(
            account_sid,
            form,
            request.headers.get("Authorization"),
            status_callback_events=[str(v) for v in posted.getall("StatusCallbackEvent", [])],
        )
        self.calls.append(received)
        if (
            _credentials(received.authorization) != (self.account_sid, self.auth_token)
            or account_sid != self.account_sid
        ):
            return self._answer(received, _Failure(401, 20003, "Authenticate"))
        if self._failures:
            return self._answer(received, self._failures.pop(0))
        if not form.get("To") or not form.get("From") or not (form.get("Url") or form.get("Twiml")):
            return self._answer(received, _Failure(400, 21205, "A 'To', 'From' and 'Url' or 'Twiml' are required"))
        received.answered, received.sid = 201, "CA" + secrets.token_hex(16)
        sid = received.sid
        return web.json_response(
            {
                "sid": sid,
                "account_sid": account_sid,
                "to": form["To"],
                "from": form["From"],
                "status": "queued",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "uri": f"/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json",
            },
            status=201,
        )

    def _answer(self, received: SmsRequest | CallRequest, failure: _Failure) -> web.Response:
        received.answered = failure.status
        body = {
            "code": failure.code,
            "message": failure.message,
            "status": failure.status,
            "more_info": f"https://www.twilio.com/docs/errors/{failure.code}",
        }
        return web.json_response(body, status=failure.status)


def _credentials(authorization: str | None) -> tuple[str, str] | None:
    """The Basic auth user and password of an Authorization header."""
    if not authorization or not authorization.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    return user, password
