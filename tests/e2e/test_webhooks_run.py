"""Partner webhooks in `solewatch run` (the deliveries are sent in-process): an endpoint registered
through the API is pinged, signed; a ping owed when the process is killed (SIGKILL) while the
receiver is down is delivered, with the same id, after the restart."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers.process import SolewatchProcess

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@acme.example", "correct horse battery staple"


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
        },
    ).start()


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
        wait_for(lambda: len(receiver.received) == 2, timeout=30)
        assert receiver.received[1][0]["Solewatch-Event-Id"] == owed
    finally:
        server.stop_quietly()
