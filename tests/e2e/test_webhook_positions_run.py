"""The `positions` webhook event in `solewatch run`: an insole's positions, sent over XSole to the
listener, reach a receiver subscribed through the API; positions owed when the process is killed
(SIGKILL) while the receiver is down are all delivered after the restart, each once after
deduplication by event id."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from shared.protocols.xsole import Ack, Position
from tests.helpers.process import SolewatchProcess
from tests.helpers.xsole_client import XSoleTestClient

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@acme.example", "correct horse battery staple"
IMEI = "356307042441013"


class Receiver(ThreadingHTTPServer):
    down = False
    received: list[bytes]


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.server.down:
            self.send_response(503)
        else:
            self.server.received.append(body)
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
            "SOLEWATCH_JWT_SECRET": "positions-run-" + "p" * 32,
            "SOLEWATCH_WEBHOOK_POLL_INTERVAL": "0.1",
            "SOLEWATCH_WEBHOOK_FIRST_RETRY_MAX": "0.5",
        },
    ).start()


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
    for body in list(receiver.received):
        event = orjson.loads(body)
        if event["id"] not in seen:
            seen.add(event["id"])
            items += event["data"]["items"]
    return items


def test_positions_owed_at_a_kill_are_delivered_once_after_the_restart(tmp_path: Path, receiver: Receiver) -> None:
    server = start(tmp_path)
    try:
        api = f"http://127.0.0.1:{server.http_port}/api/v1"
        token = httpx.post(f"{api}/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
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
        wait_for(lambda: len(received_items(receiver)) >= 15, timeout=30)
        time.sleep(1.5)  # anything sent twice would show by now
        items = received_items(receiver)
        assert [item["ts"] for item in items] == [
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) for ts in range(base, base + 15)
        ]
        assert all(item["imei"] == IMEI for item in items)
    finally:
        server.stop_quietly()
