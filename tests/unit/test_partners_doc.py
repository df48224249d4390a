"""The example receiver of docs/partners.md, run as a partner would run it: it accepts a webhook
signed as solewatch signs it (services/notifications/webhooks_outbound.py), refuses a bad or stale
signature, and handles a repeated event id once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.notifications.webhooks_outbound import signature
from shared.webhook_events import event_body
from tests.helpers.process import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "partners.md"
SECRET = "whsec_doc-example"


def example_receiver() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    [receiver] = [block for block in blocks if "ThreadingHTTPServer" in block]
    return receiver


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    script = tmp_path / "receiver.py"
    script.write_text(example_receiver())
    port = free_port()
    env = {**os.environ, "SOLEWATCH_WEBHOOK_SECRET": SECRET, "PORT": str(port)}
    process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(url, timeout=0.5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the example receiver never listened"
            time.sleep(0.05)
    try:
        yield url, process
    finally:
        process.terminate()
        process.wait(5)


def post(url: str, body: bytes, header: str) -> int:
    headers = {"Content-Type": "application/json", "Solewatch-Signature": header}
    return httpx.post(url, content=body, headers=headers, timeout=5).status_code


def test_the_example_receiver_checks_signatures_and_skips_repeats(running: tuple[str, subprocess.Popen[str]]) -> None:
    url, process = running
    body = event_body("evt_" + "a" * 24, "alert.raised", "2026-01-01T00:00:00.000Z", {"id": 7, "kind": "sos"})
    now = int(time.time())
    assert post(url, body, signature(SECRET, now, body)) == 204
    assert post(url, body, signature(SECRET, now + 1, body)) == 204  # a retry: answered, not handled again
    assert post(url, body, signature("another secret", now, body)) == 401
    assert post(url, body + b" ", signature(SECRET, now, body)) == 401  # the body was changed on the way
    assert post(url, body, signature(SECRET, now - 3600, body)) == 401  # an old request replayed
    assert post(url, body, "garbage") == 401
    ping = event_body("evt_" + "b" * 24, "ping", "2026-01-01T00:00:01.000Z", {"endpoint_id": 1})
    assert post(url, ping, signature(SECRET, now, ping)) == 204
    process.terminate()
    out, _ = process.communicate(timeout=5)
    assert out.splitlines() == [
        'alert.raised evt_aaaaaaaaaaaaaaaaaaaaaaaa {"id": 7, "kind": "sos"}',
        'ping evt_bbbbbbbbbbbbbbbbbbbbbbbb {"endpoint_id": 1}',
    ]
