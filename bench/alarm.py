"""`solewatch bench alarm`: from an ALARM frame's arrival to its SMS request at the phone gateway.

An all-in-one solewatch, configured with Twilio pointing at a local HTTP fake
of Twilio's Messages API (in this process), streams positions from 1,000
insoles (load generator processes) while a few other insoles send SOS alarms,
one at a time each. Each alarm's time is taken when its frame is written to
the socket, and matched with the arrival of the SMS naming its worker, on the
wall clock the processes share. The alert's contact has a phone only.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import percentile, print_table, register_devices, run_loadgens, start_solewatch
from shared.protocols.xsole import Alarm, AlarmKind
from shared.protocols.xsole.constants import FLAG_FIX_VALID
from shared.store.sqlite import SqliteStore
from tests.helpers.xsole_client import XSoleTestClient

ACCOUNT_SID = "AC" + "0" * 32
FIRST_ALARM_DEVICE = 900_000  # IMEI numbers of the alarm senders, far from the streaming ones


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
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

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
        await store.add_contact(tenant_id=tenant_id, name="Night supervisor", email=None, phone="+15550001111",
                                kinds=("sos",))
    finally:
        await store.close()


async def _send_alarms(port: int, credentials: list[tuple[str, str]], gateway: SmsGateway, *,
                       seconds: float, interval: float) -> list[float]:
    """Each alarm insole sends an SOS, waits for its SMS, pauses, again; the latencies."""
    latencies: list[float] = []
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
            arrival = await _sms_naming(gateway, worker, after=seen, timeout=10)
            if arrival is not None:
                latencies.append(arrival - sent)
            await asyncio.sleep(interval)
        await device.close()

    await asyncio.gather(*(insole(imei, token, FIRST_ALARM_DEVICE + i)
                           for i, (imei, token) in enumerate(credentials)))
    return latencies


async def _sms_naming(gateway: SmsGateway, worker: str, *, after: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    named = re.compile(rf"\b{re.escape(worker)}\b")
    while time.monotonic() < deadline:
        for arrived, body in gateway.arrivals[after:]:
            if named.search(body):
                return arrived
        await asyncio.sleep(0.002)
    return None


async def run(*, connections: int = 1000, seconds: float = 10.0, warmup: float = 2.0, processes: int = 2,
              rate: float = 1000.0, alarm_insoles: int = 10, alarm_interval: float = 0.5) -> dict[str, Any]:
    gateway = SmsGateway()
    await gateway.start()
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        streaming = await register_devices(data_dir, connections)
        alarming = await register_devices(data_dir, alarm_insoles, first=FIRST_ALARM_DEVICE)
        await _add_phone_contact(data_dir)
        server, port, _ = await start_solewatch(
            data_dir, command="run", max_connections=connections + alarm_insoles + 100,
            twilio_base_url=f"http://127.0.0.1:{gateway.port}", sms_from="+15550000000",
            env={"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": secrets.token_hex(16)},
        )
        try:
            load = asyncio.create_task(run_loadgens(port, streaming, processes=processes, seconds=seconds + warmup,
                                                    warmup=0.5, window=8, rate=rate))
            await asyncio.sleep(warmup)
            latencies = sorted(await _send_alarms(port, alarming, gateway, seconds=seconds, interval=alarm_interval))
            streamed = await load
        finally:
            await server.stop()
            await gateway.close()
    return {
        "mode": "embedded", "connections": connections, "offered_fps": rate, "streamed_fps": round(streamed["fps"]),
        "alarms": len(latencies), "alarm_insoles": alarm_insoles,
        "alarm_to_sms_p50_ms": round(percentile(latencies, 0.50) * 1000, 2) if latencies else None,
        "alarm_to_sms_p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "alarm_to_sms_max_ms": round(latencies[-1] * 1000, 2) if latencies else None,
    }


def report(figures: dict[str, Any]) -> None:
    print_table(f"alarm: {figures['alarm_insoles']} insoles sending SOS, {figures['connections']} streaming", [
        ("positions streamed", f"{figures['streamed_fps']:,} frames/s (offered {figures['offered_fps']:,.0f})"),
        ("alarms timed", f"{figures['alarms']}"),
        ("ALARM frame to SMS request, p50", f"{figures['alarm_to_sms_p50_ms']} ms"),
        ("ALARM frame to SMS request, p99", f"{figures['alarm_to_sms_p99_ms']} ms"),
        ("ALARM frame to SMS request, max", f"{figures['alarm_to_sms_max_ms']} ms"),
    ])
