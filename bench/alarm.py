"""`solewatch bench alarm`: from an ALARM frame to its SMS at the phone gateway, and on to
COMMAND alarm-acknowledged at the insole once the supervisor replies to that SMS.

An all-in-one solewatch, configured with Twilio pointing at a local HTTP fake
of Twilio's Messages API (in this process), streams positions from 1,000
insoles (load generator processes) while a few other insoles send SOS alarms,
one at a time each. Each alarm's time is taken when its frame is written to
the socket, and matched with the arrival of the SMS naming its worker, on the
wall clock the processes share. The alert's contact has a phone only.

The reply path (CONTRACT §6): as soon as the SMS arrives, the bench plays
Twilio posting the supervisor's reply (the SMS's code, signed as Twilio signs)
to POST /api/v1/webhooks/twilio/sms, and times the COMMAND 4 the insole then
gets. ALARM to COMMAND 4 is ALARM to SMS plus reply to COMMAND 4: the reply's
own latency (the supervisor typing, the phone network) is left out.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from twilio.request_validator import RequestValidator

from bench.common import percentile, print_table, register_devices, run_loadgens, start_solewatch
from bench.xsole_client import XSoleTestClient
from shared.protocols.xsole import Alarm, AlarmKind, Command, CommandCode, CommandResult
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store.sqlite import SqliteStore

ACCOUNT_SID = "AC" + "0" * 32
FIRST_ALARM_DEVICE = 900_000  # IMEI numbers of the alarm senders, far from the streaming ones
SUPERVISOR_PHONE = "+15550001111"
PUBLIC_URL = "https://solewatch.bench.example"  # what Twilio would call; replies are signed over it
SMS_REPLY_PATH = "/api/v1/webhooks/twilio/sms"
REPLY_CODE = re.compile(r"Reply (\d{4}) to acknowledge\.$")


class SmsGateway:
    """Answers like Twilio's Messages API and notes when each message arrived."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []  # (wall time, body)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # (host, port) of the site just started

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _message(self, request: web.Request) -> web.Response:
        arrived = time.time()
        form = await request.post()
        self.arrivals.append((arrived, str(form.get("Body", ""))))
        return web.json_response({"sid": "SM" + secrets.token_hex(16), "status": "queued"}, status=201)


async def _add_phone_contact(data_dir: Path) -> None:
    store = SqliteStore(data_dir / "solewatch.db", synchronous="NORMAL")
    await store.open()
    try:
        tenant_id = await store.ensure_tenant("default")
        await store.add_contact(
            tenant_id=tenant_id, name="Night supervisor", email=None, phone=SUPERVISOR_PHONE, kinds=("sos",)
        )
    finally:
        await store.close()


class Supervisor:
    """Twilio posting the supervisor's reply to an alert SMS, signed with the account's token."""

    def __init__(self, http_port: int, auth_token: str):
        self._url = f"http://127.0.0.1:{http_port}{SMS_REPLY_PATH}"
        self._validator = RequestValidator(auth_token)
        self._http = httpx.AsyncClient(timeout=10)

    async def reply(self, body: str) -> None:
        form = {
            "MessageSid": "SM" + secrets.token_hex(16),
            "AccountSid": ACCOUNT_SID,
            "From": SUPERVISOR_PHONE,
            "To": "+15550000000",
            "Body": body,
        }
        signature = self._validator.compute_signature(PUBLIC_URL + SMS_REPLY_PATH, form)
        response = await self._http.post(self._url, data=form, headers={"X-Twilio-Signature": signature})
        if response.status_code != 200 or "acknowledged by you" not in response.text:
            raise RuntimeError(f"the reply was not taken: {response.status_code} {response.text[:200]}")

    async def close(self) -> None:
        await self._http.aclose()


async def _send_alarms(
    port: int,
    credentials: list[tuple[str, str]],
    gateway: SmsGateway,
    supervisor: Supervisor,
    *,
    seconds: float,
    interval: float,
) -> dict[str, list[float]]:
    """Each alarm insole sends an SOS, waits for its SMS, has it answered, waits for COMMAND 4,
    pauses, again; the latencies of each leg."""
    latencies: dict[str, list[float]] = {"sms": [], "reply": [], "total": []}
    deadline = time.monotonic() + seconds

    async def insole(imei: str, token: str, number: int) -> None:
        device = await XSoleTestClient.connect("127.0.0.1", port)
        await device.login(imei, bytes.fromhex(token))
        worker = f"bench {number}"
        while time.monotonic() < deadline:
            seen = len(gateway.arrivals)
            alarm = Alarm(device.next_seq(), int(time.time()), AlarmKind.SOS, 436163000, 70553000, 80, FLAG_FIX_VALID)
            sent = time.time()
            await device.send(alarm)
            found = await _sms_naming(gateway, worker, after=seen, timeout=10)
            if found is None:
                continue
            arrival, body = found
            latencies["sms"].append(arrival - sent)
            code = REPLY_CODE.search(body)
            if code is None:
                raise RuntimeError(f"the alert SMS has no reply code: {body!r}")
            replied = time.time()
            await supervisor.reply(code.group(1))
            commanded = await _acknowledged(device, timeout=10)
            if commanded is not None:
                latencies["reply"].append(commanded - replied)
                latencies["total"].append(arrival - sent + commanded - replied)
            await asyncio.sleep(interval)
        await device.close()

    await asyncio.gather(*(insole(imei, token, FIRST_ALARM_DEVICE + i) for i, (imei, token) in enumerate(credentials)))
    return latencies


async def _acknowledged(device: XSoleTestClient, *, timeout: float) -> float | None:
    """When COMMAND alarm-acknowledged reached the insole (its result is sent back, as an insole
    does); ACKs of earlier frames are skipped."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await device.recv(timeout=left)
        except TimeoutError:
            return None
        if isinstance(frame, Command):
            arrived = time.time()
            await device.send(CommandResult(device.next_seq(), frame.seq, 0))
            if frame.cmd == CommandCode.ALARM_ACKNOWLEDGED:
                return arrived
    return None


async def _sms_naming(gateway: SmsGateway, worker: str, *, after: int, timeout: float) -> tuple[float, str] | None:
    """(arrival, body) of the first SMS naming `worker` among those after the first `after`."""
    deadline = time.monotonic() + timeout
    named = re.compile(rf"\b{re.escape(worker)}\b")
    while time.monotonic() < deadline:
        for arrived, body in gateway.arrivals[after:]:
            if named.search(body):
                return arrived, body
        await asyncio.sleep(0.002)
    return None


async def run(
    *,
    connections: int = 1000,
    seconds: float = 10.0,
    warmup: float = 2.0,
    processes: int = 2,
    rate: float = 1000.0,
    alarm_insoles: int = 10,
    alarm_interval: float = 0.5,
) -> dict[str, Any]:
    gateway = SmsGateway()
    await gateway.start()
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        streaming = await register_devices(data_dir, connections)
        alarming = await register_devices(data_dir, alarm_insoles, first=FIRST_ALARM_DEVICE)
        await _add_phone_contact(data_dir)
        auth_token = secrets.token_hex(16)
        server, port, http_port = await start_solewatch(
            data_dir,
            command="run",
            max_connections=connections + alarm_insoles + 100,
            twilio_base_url=f"http://127.0.0.1:{gateway.port}",
            sms_from="+15550000000",
            public_url=PUBLIC_URL,
            env={"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": auth_token},
        )
        supervisor = Supervisor(http_port, auth_token)
        try:
            load = asyncio.create_task(
                run_loadgens(
                    port, streaming, processes=processes, seconds=seconds + warmup, warmup=0.5, window=8, rate=rate
                )
            )
            await asyncio.sleep(warmup)
            legs = await _send_alarms(port, alarming, gateway, supervisor, seconds=seconds, interval=alarm_interval)
            streamed = await load
        finally:
            await supervisor.close()
            await server.stop()
            await gateway.close()
    latencies, replies, totals = sorted(legs["sms"]), sorted(legs["reply"]), sorted(legs["total"])
    return {
        "mode": "embedded",
        "connections": connections,
        "offered_fps": rate,
        "streamed_fps": round(streamed["fps"]),
        "alarms": len(latencies),
        "alarm_insoles": alarm_insoles,
        "alarm_to_sms_p50_ms": round(percentile(latencies, 0.50) * 1000, 2) if latencies else None,
        "alarm_to_sms_p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "alarm_to_sms_max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
        "acknowledged": len(totals),
        "reply_to_command_p50_ms": _ms(replies, 0.50),
        "reply_to_command_p99_ms": _ms(replies, 0.99),
        "alarm_to_command_p50_ms": _ms(totals, 0.50),
        "alarm_to_command_p99_ms": _ms(totals, 0.99),
        "alarm_to_command_max_ms": round(totals[-1] * 1000, 2) if totals else None,
    }


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 2) if values else None


def report(figures: dict[str, Any]) -> None:
    print_table(
        f"alarm: {figures['alarm_insoles']} insoles sending SOS, {figures['connections']} streaming",
        [
            ("positions streamed", f"{figures['streamed_fps']:,} frames/s (offered {figures['offered_fps']:,.0f})"),
            ("alarms timed", f"{figures['alarms']}"),
            ("ALARM frame to SMS request, p50", f"{figures['alarm_to_sms_p50_ms']} ms"),
            ("ALARM frame to SMS request, p99", f"{figures['alarm_to_sms_p99_ms']} ms"),
            ("ALARM frame to SMS request, max", f"{figures['alarm_to_sms_max_ms']} ms"),
            ("alarms acknowledged by SMS reply", f"{figures['acknowledged']}"),
            ("SMS reply to COMMAND 4 at the insole, p50", f"{figures['reply_to_command_p50_ms']} ms"),
            ("SMS reply to COMMAND 4 at the insole, p99", f"{figures['reply_to_command_p99_ms']} ms"),
            ("ALARM to COMMAND 4, reply's own latency excluded, p50", f"{figures['alarm_to_command_p50_ms']} ms"),
            ("ALARM to COMMAND 4, reply's own latency excluded, p99", f"{figures['alarm_to_command_p99_ms']} ms"),
            ("ALARM to COMMAND 4, reply's own latency excluded, max", f"{figures['alarm_to_command_max_ms']} ms"),
        ],
    )
