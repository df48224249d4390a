"""`solewatch bench webhooks`: how fast partner webhooks are delivered, and whether slow partners
delay the SOS SMS (issue 16).

An all-in-one solewatch runs as its own process, Twilio pointed at a local fake
of its Messages API, webhook endpoints registered through the REST API as the
tenant's admin, and every partner receiver an aiohttp server in this process.
Two figures, measured in one run so that the machine's noise hits both:

1. **Delivery throughput.** Insoles send SOS alarms (each waits for the ACK of
   one before sending the next, as firmware does); each alarm raises an alert,
   and each alert's `alert.raised` event goes the real way to one fast
   endpoint: owed in the alert's own transaction, the sender woken by the
   alert's bus message, claiming it and POSTing it signed. The receiver checks every
   signature and counts event ids. Timed from the first ALARM frame written
   to the arrival of the last new event id; duplicates (an id heard again) are
   counted apart. No insoles stream meanwhile.
2. **ALARM → SMS with slow endpoints attached.** 1,000 insoles stream positions
   while 10 more each send an SOS, wait for its SMS, answer it as the
   supervisor (the alert becomes acknowledged: another event), pause, again,
   as `solewatch bench alarm` does. The run alternates phases A (no endpoint at
   all) and B (`--slow-endpoints` endpoints subscribed to every alert event,
   half of them hanging past the 10 s attempt timeout, the others answering
   after 3 s), in the order ABBABAABABBA so that a steady drift weighs on both
   alike. `--slow-endpoints 0` makes B the same as A: the ratios it gives are
   the bench's own noise, the yardstick for the others. A phase B ends by deleting its endpoints (and their backlog) and
   letting the hung requests go, so a phase A carries nothing of it. The
   server's CPU is read over each phase too (from /proc), to tell a busier
   server from a busier machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiohttp import web

from bench.alarm import ACCOUNT_SID, PUBLIC_URL, REPLY_CODE, SUPERVISOR_PHONE, SmsGateway, Supervisor
from bench.common import CpuSampler, percentile, print_table, register_devices, run_loadgens, start_solewatch
from bench.xsole_client import XSoleTestClient
from shared.protocols.xsole import Alarm, AlarmKind, Command, CommandCode, CommandResult
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store.sqlite import SqliteStore

FIRST_BURST_DEVICE = 800_000  # IMEI numbers of the throughput insoles, far from the streaming ones
FIRST_ALARM_DEVICE = 900_000  # and of the insoles timed in phases A and B
ADMIN_EMAIL, ADMIN_PASSWORD = "bench@solewatch.example", "bench webhooks " + secrets.token_hex(8)
ALERT_EVENTS = ("alert.raised", "alert.acknowledged", "alert.resolved", "alert.escalated")
HANG_S = 15.0  # past the sender's 10 s deadline for an attempt
SLOW_S = 3.0  # within it, but slow
# A and B alternate in an order where each holds the same mean position (1,4,6,7,9,12 and 2,3,5,8,10,11),
# so a steady drift over the run (the database growing, the machine's other work) weighs on both alike.
PHASES = "ABBABAABABBA"
TARGET_RATIO = 1.10  # issue 16: B's ALARM → SMS p99 at most 10% above A's


@dataclass
class Partners:
    """Every partner receiver (one aiohttp server, a path per endpoint): `/fast/N` answers at once,
    `/hang/N` and `/slow/N` after HANG_S and SLOW_S. Each request's signature is checked with the
    secret of its path; the fast paths count event ids."""

    signing_secrets: dict[str, str] = field(default_factory=dict)  # path -> the endpoint's secret
    arrivals: Counter[str] = field(default_factory=Counter)  # fast paths: event id -> times heard
    alert_ids: set[int] = field(default_factory=set)  # fast paths: the alerts the events were about
    last_new_at: float = 0.0  # wall time the last new event id arrived
    slow_requests: int = 0
    open_requests: int = 0  # at the hang and slow paths, not yet answered
    bad_signatures: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)  # ends every wait at once
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{kind}/{n}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        secret = self.signing_secrets.get(request.path)
        if secret is None or not _signed(secret, request.headers.get("Solewatch-Signature", ""), body):
            self.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        kind = request.match_info["kind"]
        if kind == "fast":
            event_id = request.headers["Solewatch-Event-Id"]
            if not self.arrivals[event_id]:
                self.last_new_at = arrived
                self.alert_ids.add(int(orjson.loads(body)["data"]["id"]))
            self.arrivals[event_id] += 1
            return web.Response(status=204)
        self.slow_requests += 1
        self.open_requests += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.released.wait(), HANG_S if kind == "hang" else SLOW_S)
        finally:
            self.open_requests -= 1
        return web.Response(status=204)


def _signed(secret: str, header: str, body: bytes) -> bool:
    """The Solewatch-Signature check a partner makes (CONTRACT §7)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(fields["v1"], expected)
    except (KeyError, ValueError):
        return False


class Admin:
    """The tenant's admin on the REST API: registers and deletes webhook endpoints."""

    def __init__(self, http_port: int):
        self._api = f"http://127.0.0.1:{http_port}/api/v1"
        self._http = httpx.AsyncClient(timeout=30)

    async def sign_in(self) -> None:
        answer = await self._http.post(
            f"{self._api}/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        answer.raise_for_status()
        self._http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    async def add_endpoint(self, partners: Partners, path: str, events: tuple[str, ...]) -> int:
        answer = await self._http.post(
            f"{self._api}/webhook-endpoints", json={"url": partners.url(path), "events": list(events)}
        )
        if answer.status_code != 201:
            raise RuntimeError(f"the endpoint was not created: {answer.status_code} {answer.text[:200]}")
        created = answer.json()
        partners.signing_secrets[path] = created["secret"]
        return int(created["id"])

    async def delete_endpoint(self, endpoint_id: int) -> None:
        answer = await self._http.delete(f"{self._api}/webhook-endpoints/{endpoint_id}")
        if answer.status_code != 204:
            raise RuntimeError(f"the endpoint was not deleted: {answer.status_code} {answer.text[:200]}")

    async def close(self) -> None:
        await self._http.aclose()


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


async def _insoles(port: int, credentials: list[tuple[str, str]]) -> list[XSoleTestClient]:
    async def one(imei: str, token: str) -> XSoleTestClient:
        device = await XSoleTestClient.connect("127.0.0.1", port)
        await device.login(imei, bytes.fromhex(token))
        return device

    return list(await asyncio.gather(*(one(imei, token) for imei, token in credentials)))


def _sos(device: XSoleTestClient) -> Alarm:
    return Alarm(device.next_seq(), int(time.time()), AlarmKind.SOS, 436163000, 70553000, 80, FLAG_FIX_VALID)


async def _throughput(
    port: int,
    credentials: list[tuple[str, str]],
    partners: Partners,
    admin: Admin,
    gateway: SmsGateway,
    *,
    events: int,
) -> dict[str, Any]:
    """`events` SOS alarms from the burst insoles, each alert's alert.raised delivered to one fast endpoint.
    The alerts' SMS are timed too: the alerting path's own pace, next to the webhooks'."""
    endpoint_id = await admin.add_endpoint(partners, "/fast/0", ("alert.raised",))
    devices = await _insoles(port, credentials)
    shares = [events // len(devices) + (i < events % len(devices)) for i in range(len(devices))]
    refused = 0
    acked_at = 0.0

    async def insole(device: XSoleTestClient, alarms: int) -> None:
        nonlocal refused, acked_at
        for _ in range(alarms):
            alarm = _sos(device)
            await device.send(alarm)
            acks = await device.recv_acks(1, timeout=30)
            refused += acks.get(alarm.seq) != 0
            acked_at = max(acked_at, time.time())

    sms_before = len(gateway.arrivals)
    started = time.time()
    await asyncio.gather(*(insole(device, alarms) for device, alarms in zip(devices, shares, strict=True)))
    expected = events - refused
    deadline = time.monotonic() + 60 + events / 20
    while (len(partners.arrivals) < expected or len(gateway.arrivals) - sms_before < expected) and (
        time.monotonic() < deadline
    ):
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)  # a late duplicate would arrive now
    for device in devices:
        await device.close()
    await admin.delete_endpoint(endpoint_id)
    unique = len(partners.arrivals)
    sms = gateway.arrivals[sms_before:]
    elapsed = (partners.last_new_at - started) if unique else float("nan")
    return {
        "events": expected,
        "alarms_refused": refused,
        "delivered_unique": unique,
        "delivered_alerts": len(partners.alert_ids),
        "duplicates": sum(partners.arrivals.values()) - unique,
        "all_delivered_once": unique == expected == len(partners.alert_ids)
        and sum(partners.arrivals.values()) == unique,
        "alarms_per_s": round(events / (acked_at - started), 1),
        "sms_per_s": round(len(sms) / (max(arrived for arrived, _ in sms) - started), 1) if sms else 0.0,
        "events_per_s": round(unique / elapsed, 1) if unique else 0.0,
        "seconds_to_last_event": round(elapsed, 2),
    }


class AlarmInsoles:
    """The insoles timed in phases A and B: SOS, its SMS, the supervisor's reply, COMMAND 4, a pause."""

    def __init__(self, devices: list[XSoleTestClient], gateway: SmsGateway, supervisor: Supervisor, interval: float):
        self._devices = devices
        self._gateway = gateway
        self._supervisor = supervisor
        self._interval = interval

    async def phase(self, seconds: float) -> list[float]:
        """ALARM frame → SMS latencies of one phase (each insole finishes its current alarm)."""
        latencies: list[float] = []
        deadline = time.monotonic() + seconds

        async def insole(device: XSoleTestClient, number: int) -> None:
            named = re.compile(rf"\bbench {FIRST_ALARM_DEVICE + number}\b")
            while time.monotonic() < deadline:
                seen = len(self._gateway.arrivals)
                sent = time.time()
                await device.send(_sos(device))
                found = await self._sms_naming(named, after=seen, timeout=10)
                if found is None:
                    continue
                arrival, body = found
                latencies.append(arrival - sent)
                code = REPLY_CODE.search(body)
                if code is None:
                    raise RuntimeError(f"the alert SMS has no reply code: {body!r}")
                await self._supervisor.reply(code.group(1))
                await _acknowledged(device, timeout=10)
                await asyncio.sleep(self._interval)

        await asyncio.gather(*(insole(device, i) for i, device in enumerate(self._devices)))
        return latencies

    async def _sms_naming(self, named: re.Pattern[str], *, after: int, timeout: float) -> tuple[float, str] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for arrived, body in self._gateway.arrivals[after:]:
                if named.search(body):
                    return arrived, body
            await asyncio.sleep(0.002)
        return None


async def _acknowledged(device: XSoleTestClient, *, timeout: float) -> bool:
    """Wait for COMMAND alarm-acknowledged, answering it (and any other command) as an insole does."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await device.recv(timeout=left)
        except TimeoutError:
            return False
        if isinstance(frame, Command):
            await device.send(CommandResult(device.next_seq(), frame.seq, 0))
            if frame.cmd == CommandCode.ALARM_ACKNOWLEDGED:
                return True
    return False


async def _slow_endpoints(admin: Admin, partners: Partners, count: int) -> list[int]:
    return [
        await admin.add_endpoint(partners, f"/{'hang' if i % 2 == 0 else 'slow'}/{i}", ALERT_EVENTS)
        for i in range(count)
    ]


async def _remove(admin: Admin, partners: Partners, endpoint_ids: list[int]) -> None:
    """Delete the endpoints (their backlog goes with them), then let the hung requests go and wait
    until the sender has heard every answer, so the next phase A starts clean."""
    for endpoint_id in endpoint_ids:
        await admin.delete_endpoint(endpoint_id)
    partners.released.set()
    deadline = time.monotonic() + 15
    while partners.open_requests and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    partners.released.clear()


async def run(
    *,
    connections: int = 1000,
    seconds: float = 60.0,
    warmup: float = 2.0,
    processes: int = 2,
    rate: float = 1000.0,
    events: int = 1000,
    burst_insoles: int = 50,
    alarm_insoles: int = 10,
    alarm_interval: float = 0.5,
    slow_endpoints: int = 10,
    phases: str = PHASES,
) -> dict[str, Any]:
    gateway, partners = SmsGateway(), Partners()
    await gateway.start()
    await partners.start()
    phase_seconds = seconds / len(phases)
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        streaming = await register_devices(data_dir, connections)
        burst = await register_devices(data_dir, burst_insoles, first=FIRST_BURST_DEVICE)
        alarming = await register_devices(data_dir, alarm_insoles, first=FIRST_ALARM_DEVICE)
        await _add_phone_contact(data_dir)
        auth_token = secrets.token_hex(16)
        server, port, http_port = await start_solewatch(
            data_dir,
            command="run",
            max_connections=connections + burst_insoles + alarm_insoles + 100,
            twilio_base_url=f"http://127.0.0.1:{gateway.port}",
            sms_from="+15550000000",
            public_url=PUBLIC_URL,
            env={
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": auth_token,
                "SOLEWATCH_ADMIN_EMAIL": ADMIN_EMAIL,
                "SOLEWATCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "SOLEWATCH_JWT_SECRET": secrets.token_hex(32),
            },
        )
        admin, supervisor = Admin(http_port), Supervisor(http_port, auth_token)
        latencies: dict[str, list[float]] = {"A": [], "B": []}
        busy, timed_s = {"A": 0.0, "B": 0.0}, {"A": 0.0, "B": 0.0}  # server CPU seconds, wall seconds
        slow_requests = 0
        try:
            await admin.sign_in()
            delivery = await _throughput(port, burst, partners, admin, gateway, events=events)
            timed = AlarmInsoles(await _insoles(port, alarming), gateway, supervisor, alarm_interval)
            # The streaming outlasts the phases: each switch takes a moment (a few API calls, the hung
            # requests let go); what is left of it after the last phase is waited out.
            load = asyncio.create_task(
                run_loadgens(
                    port,
                    streaming,
                    processes=processes,
                    seconds=warmup + seconds + 2 * len(phases),
                    warmup=0.5,
                    window=8,
                    rate=rate,
                )
            )
            await asyncio.sleep(warmup)
            async with CpuSampler(server.pid) as cpu:
                for phase in phases:
                    endpoint_ids = await _slow_endpoints(admin, partners, slow_endpoints) if phase == "B" else []
                    began = time.time()
                    latencies[phase] += await timed.phase(phase_seconds)
                    ended = time.time()
                    busy[phase] += cpu.cpu_between(began, ended)
                    timed_s[phase] += ended - began
                    slow_requests = partners.slow_requests
                    if endpoint_ids:
                        await _remove(admin, partners, endpoint_ids)
            streamed = await load
        finally:
            await admin.close()
            await supervisor.close()
            await server.stop()
            await gateway.close()
            await partners.close()
    a, b = sorted(latencies["A"]), sorted(latencies["B"])
    figures: dict[str, Any] = {
        "mode": "embedded",
        "connections": connections,
        "streamed_fps": round(streamed["fps"]),
        "slow_endpoints": slow_endpoints,
        "alarm_insoles": alarm_insoles,
        "phases": phases,
        "phase_seconds": round(phase_seconds, 2),
        **{f"webhook_{key}": value for key, value in delivery.items()},
        "bad_signatures": partners.bad_signatures,
        "slow_endpoint_requests": slow_requests,
        "server_cpu_pct_a": round(100 * busy["A"] / timed_s["A"], 1),
        "server_cpu_pct_b": round(100 * busy["B"] / timed_s["B"], 1),
        "alarms_a": len(a),
        "alarms_b": len(b),
    }
    for name, values in (("a", a), ("b", b)):
        figures[f"alarm_to_sms_p50_ms_{name}"] = _ms(values, 0.50)
        figures[f"alarm_to_sms_p99_ms_{name}"] = _ms(values, 0.99)
        figures[f"alarm_to_sms_max_ms_{name}"] = round(values[-1] * 1000, 2) if values else None
    for q in ("p50", "p99"):
        before, after = figures[f"alarm_to_sms_{q}_ms_a"], figures[f"alarm_to_sms_{q}_ms_b"]
        figures[f"ratio_{q}"] = round(after / before, 3) if before and after else None
    figures["target_met"] = figures["ratio_p99"] is not None and figures["ratio_p99"] <= TARGET_RATIO
    return figures


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 2) if values else None


def report(figures: dict[str, Any]) -> None:
    print_table(
        f"webhooks: {figures['webhook_events']} alert.raised events to one fast endpoint",
        [
            ("alarms raised (ACKed)", f"{figures['webhook_alarms_per_s']:,} /s"),
            ("their alerts' SMS, first ALARM to last SMS", f"{figures['webhook_sms_per_s']:,} /s"),
            ("events delivered, first ALARM to last new id", f"{figures['webhook_events_per_s']:,} /s"),
            ("seconds to the last event", f"{figures['webhook_seconds_to_last_event']} s"),
            (
                "event ids delivered / alerts they name",
                f"{figures['webhook_delivered_unique']} / {figures['webhook_delivered_alerts']}",
            ),
            ("duplicates (an id heard again)", f"{figures['webhook_duplicates']}"),
            ("every event delivered exactly once", "yes" if figures["webhook_all_delivered_once"] else "NO"),
            ("requests with a bad signature", f"{figures['bad_signatures']}"),
        ],
    )
    b_label = f"B ({figures['slow_endpoints']} slow endpoints)"
    print_table(
        f"ALARM → SMS, phases {figures['phases']} of {figures['phase_seconds']} s, A: no endpoint, {b_label}; "
        f"{figures['connections']} insoles streaming {figures['streamed_fps']:,} frames/s",
        [
            ("alarms timed, A / B", f"{figures['alarms_a']} / {figures['alarms_b']}"),
            ("requests at the slow endpoints", f"{figures['slow_endpoint_requests']}"),
            ("server CPU (% of one core), A / B", f"{figures['server_cpu_pct_a']} / {figures['server_cpu_pct_b']}"),
            (
                "ALARM frame to SMS request p50, A / B",
                f"{figures['alarm_to_sms_p50_ms_a']} / {figures['alarm_to_sms_p50_ms_b']} ms",
            ),
            (
                "ALARM frame to SMS request p99, A / B",
                f"{figures['alarm_to_sms_p99_ms_a']} / {figures['alarm_to_sms_p99_ms_b']} ms",
            ),
            (
                "ALARM frame to SMS request max, A / B",
                f"{figures['alarm_to_sms_max_ms_a']} / {figures['alarm_to_sms_max_ms_b']} ms",
            ),
            ("ratio B / A, p50", f"{figures['ratio_p50']}"),
            (
                "ratio B / A, p99",
                f"{figures['ratio_p99']} (target ≤ {TARGET_RATIO}: {'met' if figures['target_met'] else 'MISSED'})",
            ),
        ],
    )
