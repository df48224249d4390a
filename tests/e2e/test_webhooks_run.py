"""Partner webhooks in `solewatch run` (the deliveries are sent in-process): an endpoint registered
through the API is pinged, signed; a ping owed when the process is killed (SIGKILL) while the
receiver is down is delivered, with the same id, after the restart; an insole's login, SOS, answer
to a command and logout reach an endpoint as the events §7 names; positions owed when the process
is killed while the receiver is down are all delivered after the restart, each once after
deduplication by event id."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shared.protocols.xsole import Ack, Command, CommandCode, CommandResult, Position
from tests.helpers.process import SolewatchProcess
from tests.helpers.xsole_client import XSoleTestClient

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@acme.example", "correct horse battery staple"
# A killed sender's delivery waits this long to be sent again (the shortest lease allowed; the default is 60 s).
LEASE_S = 11


class Receiver(ThreadingHTTPServer):
    down = False
    received: list[tuple[dict[str, str], bytes]]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.down:
            self.send_response(503)
        else:
            self.server.received.append((dict(self.headers), body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(("127.0.0.1", 0), Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def verified(endpoint: dict[str, Any], headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The event, once its signature is checked as docs/partners.md tells partners to."""
    fields = dict(part.split("=", 1) for part in headers["Solewatch-Signature"].split(","))
    secret = str(endpoint["secret"]).encode()
    assert fields["v1"] == hmac.new(secret, f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    event: dict[str, Any] = orjson.loads(body)
    assert headers["Solewatch-Event-Id"] == event["id"]
    return event


def wait_for(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def start(tmp_path: Path) -> SolewatchProcess:
    return SolewatchProcess(
        tmp_path / "data",
        "run",
        log_path=tmp_path / "run.log",
        env={
            "SOLEWATCH_ADMIN_EMAIL": ADMIN_EMAIL,
            "SOLEWATCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "SOLEWATCH_JWT_SECRET": "webhooks-run-" + "w" * 32,
            "SOLEWATCH_WEBHOOK_POLL_INTERVAL": "0.1",
            "SOLEWATCH_WEBHOOK_FIRST_RETRY_MAX": "0.5",
            "SOLEWATCH_WEBHOOK_LEASE": str(LEASE_S),
        },
    ).start()


def sign_in(api: str) -> dict[str, str]:
    token = httpx.post(f"{api}/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}


def test_a_ping_is_delivered_signed_and_survives_a_kill(tmp_path: Path, receiver: Receiver) -> None:
    server = start(tmp_path)
    try:
        api = f"http://127.0.0.1:{server.http_port}/api/v1"
        token = httpx.post(f"{api}/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
        created = httpx.post(f"{api}/webhook-endpoints", headers=auth, json={"url": url, "events": ["ping"]})
        assert created.status_code == 201, created.text
        endpoint = created.json()

        pinged = httpx.post(f"{api}/webhook-endpoints/{endpoint['id']}/ping", headers=auth).json()
        wait_for(lambda: receiver.received)
        [(headers, body)] = receiver.received
        assert headers["Solewatch-Event-Id"] == pinged["event_id"] == orjson.loads(body)["id"]
        fields = dict(part.split("=", 1) for part in headers["Solewatch-Signature"].split(","))
        mac = hmac.new(endpoint["secret"].encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
        assert fields["v1"] == mac and abs(int(fields["t"]) - time.time()) < 30

        receiver.down = True
        owed = httpx.post(f"{api}/webhook-endpoints/{endpoint['id']}/ping", headers=auth).json()["event_id"]

        def tried() -> bool:
            log = httpx.get(f"{api}/webhook-endpoints/{endpoint['id']}/deliveries", headers=auth).json()["items"]
            return any(d["event_id"] == owed and d["attempts"] >= 1 for d in log)

        wait_for(tried)
        server.kill()
        receiver.down = False
        server = start(tmp_path)
        wait_for(lambda: len(receiver.received) == 2, timeout=LEASE_S + 15)
        assert receiver.received[1][0]["Solewatch-Event-Id"] == owed
    finally:
        server.stop_quietly()


IMEI = "356307042441013"
INSOLE_EVENTS = ["device.online", "alert.raised", "alert.acknowledged", "command.completed", "device.offline"]


async def insole_day(port: int, token: bytes, api: str, auth: dict[str, str]) -> None:
    """Log in, send an SOS, answer the command the API queues, and leave."""
    client = await XSoleTestClient.connect("127.0.0.1", port)
    assert (await client.login(IMEI, token)).status == 0
    await client.send(client.alarm())
    assert isinstance(await client.recv(timeout=10), Ack)
    async with httpx.AsyncClient() as http:
        alerts = await _eventually_items(http, f"{api}/alerts", auth)
        acked = await http.post(f"{api}/alerts/{alerts[0]['id']}/ack", headers=auth)
        assert acked.status_code == 200, acked.text
        queued = await http.post(f"{api}/devices/{IMEI}/commands", headers=auth, json={"command": "vibrate"})
        assert queued.status_code == 202, queued.text
    command = await client.recv(timeout=10)
    while not (isinstance(command, Command) and command.cmd == CommandCode.VIBRATE):
        command = await client.recv(timeout=10)  # alarm-acknowledged first: left unanswered
    await client.send(CommandResult(client.next_seq(), command.seq, 0))
    assert isinstance(await client.recv(timeout=10), Ack)
    await client.close()


async def _eventually_items(http: httpx.AsyncClient, url: str, auth: dict[str, str]) -> list[dict[str, object]]:
    deadline = time.monotonic() + 15
    while not (items := (await http.get(url, headers=auth)).json()["items"]):
        assert time.monotonic() < deadline, f"nothing at {url}"
        await asyncio.sleep(0.1)
    return list(items)


def test_an_insoles_day_reaches_a_partner_as_signed_events(tmp_path: Path, receiver: Receiver) -> None:
    server = start(tmp_path)
    try:
        api = f"http://127.0.0.1:{server.http_port}/api/v1"
        auth = sign_in(api)
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
        endpoint = httpx.post(
            f"{api}/webhook-endpoints", headers=auth, json={"url": url, "events": [*INSOLE_EVENTS, "alert.resolved"]}
        ).json()
        registered = httpx.post(f"{api}/devices", headers=auth, json={"imei": IMEI, "name": "Alice"})
        assert registered.status_code == 201, registered.text

        token = bytes.fromhex(registered.json()["token"])
        asyncio.run(insole_day(server.listener_port, token, api, auth))
        wait_for(lambda: len(receiver.received) >= len(INSOLE_EVENTS))
        time.sleep(0.5)  # nothing more should come

        events: list[dict[str, Any]] = [verified(endpoint, headers, body) for headers, body in receiver.received]
        by_type = {event["type"]: event for event in events}
        assert sorted(by_type) == sorted(INSOLE_EVENTS) and len(events) == len(INSOLE_EVENTS)
        online, offline = by_type["device.online"]["data"], by_type["device.offline"]["data"]
        assert set(online) == {"imei", "online", "battery", "last_seen"}
        assert (online["imei"], online["online"], offline["imei"], offline["online"]) == (IMEI, True, IMEI, False)
        assert by_type["alert.raised"]["data"]["kind"] == "sos"
        assert by_type["alert.acknowledged"]["data"]["status"] == "acknowledged"
        completed = by_type["command.completed"]["data"]
        assert (completed["imei"], completed["command"], completed["status"]) == (IMEI, "vibrate", "done")
    finally:
        server.stop_quietly()


async def send_positions(port: int, token: bytes, timestamps: range) -> None:
    """One POSITION frame at a time, each ACKed (stored) before the next goes."""
    client = await XSoleTestClient.connect("127.0.0.1", port)
    try:
        assert (await client.login(IMEI, token)).status == 0
        for seq, ts in enumerate(timestamps, start=2):
            await client.send(Position(seq, ts, 436163000 + seq, 70553000, 12, 140, 2705, 9, 8, 87, 1))
            reply = await client.recv(timeout=10)
            assert isinstance(reply, Ack) and (reply.seq, reply.status) == (seq, 0)
    finally:
        await client.close()


def received_items(receiver: Receiver) -> list[dict[str, object]]:
    """Every item of the distinct events received (deduplicated by event id, as a partner does)."""
    seen: set[str] = set()
    items: list[dict[str, object]] = []
    for _, body in list(receiver.received):
        event = orjson.loads(body)
        if event["id"] not in seen:
            seen.add(event["id"])
            items += event["data"]["items"]
    return items


def test_positions_owed_at_a_kill_are_delivered_once_after_the_restart(tmp_path: Path, receiver: Receiver) -> None:
    server = start(tmp_path)
    try:
        api = f"http://127.0.0.1:{server.http_port}/api/v1"
        auth = sign_in(api)
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
        created = httpx.post(f"{api}/webhook-endpoints", headers=auth, json={"url": url, "events": ["positions"]})
        assert created.status_code == 201, created.text
        endpoint_id = created.json()["id"]
        device = httpx.post(f"{api}/devices", headers=auth, json={"imei": IMEI, "name": "Ana"})
        assert device.status_code == 201, device.text
        secret = bytes.fromhex(device.json()["token"])
        base = int(time.time()) - 600

        asyncio.run(send_positions(server.listener_port, secret, range(base, base + 5)))
        wait_for(lambda: len(received_items(receiver)) == 5)

        receiver.down = True
        asyncio.run(send_positions(server.listener_port, secret, range(base + 5, base + 10)))

        def in_retry() -> bool:
            log = httpx.get(f"{api}/webhook-endpoints/{endpoint_id}/deliveries", headers=auth).json()["items"]
            return any(d["type"] == "positions" and d["status"] == "pending" and d["attempts"] >= 1 for d in log)

        wait_for(in_retry)  # one batch is being retried ...
        asyncio.run(send_positions(server.listener_port, secret, range(base + 10, base + 15)))
        time.sleep(1.0)  # ... and these wait behind it as pending positions
        server.kill()
        receiver.down = False
        server = start(tmp_path)
        wait_for(lambda: len(received_items(receiver)) >= 15, timeout=LEASE_S + 15)
        time.sleep(1.5)  # anything sent twice would show by now
        items = received_items(receiver)
        assert [item["ts"] for item in items] == [
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) for ts in range(base, base + 15)
        ]
        assert all(item["imei"] == IMEI for item in items)
    finally:
        server.stop_quietly()
