"""What a huge unauthenticated request body costs `solewatch run`: memory, and the event loop.

Two measurements, each on a fresh `solewatch run` (so its peak RSS is its own):

- **RSS peak**: POST /api/v1/auth/token with a 400 MB body (Content-Length
  declared, then sent in 1 MiB writes as fast as the server reads), and the
  process's VmHWM (peak resident set) before and after.
- **event-loop stall**: the same with a 300 MB body, while a logged-in XSole
  device sends a HEARTBEAT every 20 ms and a client GETs /healthz every 20 ms:
  the longest wait for an ACK and for a /healthz answer, from the start of the
  upload until 1 s after the server answered it.

`--source DIR` runs another checkout (an older commit, for a before/after):

    mkdir /tmp/old && git archive HEAD | tar -x -C /tmp/old
    python -m bench.hostile_http --source /tmp/old --runs 3
    python -m bench.hostile_http --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, TRACKER_PORTS_OFF, free_port, print_table
from shared.protocols.xsole import Heartbeat, Login, LoginAck, encode
from shared.protocols.xsole.framing import FrameBuffer
from shared.protocols.xsole.messages import decode

ADMIN_EMAIL, ADMIN_PASSWORD = "bench@solewatch.example", "bench password 0123"
IMEI = "356307042441013"
PROBE_INTERVAL = 0.02
WRITE = 1024 * 1024


class Server:
    """`solewatch run` from the checkout at `source`, with its own data directory."""

    def __init__(self, source: Path):
        self.source = source
        self.http_port, self.listener_port = free_port(), free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-hostile-http-")
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Server:
        env = {
            **os.environ,
            **TRACKER_PORTS_OFF,
            "PYTHONPATH": str(self.source),  # ahead of the editable install, so `source`'s code runs
            "SOLEWATCH_DATA_DIR": self._tmp.name,
            "SOLEWATCH_HTTP_PORT": str(self.http_port),
            "SOLEWATCH_LISTENER_PORT": str(self.listener_port),
            "SOLEWATCH_BIND": "127.0.0.1",
            "SOLEWATCH_LOG_LEVEL": "warning",
            "SOLEWATCH_ADMIN_EMAIL": ADMIN_EMAIL,
            "SOLEWATCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "run",
            env=env,
            cwd=self.source,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{self.http_port}/readyz")).status_code == 200:
                        return self
                await asyncio.sleep(0.1)
        raise RuntimeError("solewatch did not become ready")

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._tmp.cleanup()

    def memory_mb(self, field: str) -> float:
        """VmRSS (now) or VmHWM (peak so far) of the server process, in MB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    async def register_device(self) -> bytes:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.http_port}") as http:
            login = await http.post("/api/v1/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            device = await http.post("/api/v1/devices", headers=headers, json={"imei": IMEI, "name": "bench"})
            return bytes.fromhex(device.json()["token"])


async def upload(port: int, size: int) -> tuple[int | None, float]:
    """POST /api/v1/auth/token with a `size`-byte body; the answer's status (None if none) and when it came."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST /api/v1/auth/token HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    prefix = b'{"email": "x@example.com", "password": "'
    block = b"x" * WRITE
    writer.write(head + prefix)
    sent = len(prefix)
    answer = asyncio.ensure_future(reader.readline())
    # A server may answer from the headers alone: give it a moment, as a client
    # sending `Expect: 100-continue` would, so the answer is read before any reset.
    await asyncio.wait([answer], timeout=0.2)
    try:
        while sent < size and not answer.done():
            n = min(WRITE, size - sent)
            writer.write(block[:n] if sent + n < size else block[: n - 2] + b'"}')
            sent += n
            try:
                await writer.drain()
            except ConnectionError:
                break
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(asyncio.shield(answer), 120)
        status_line = answer.result() if answer.done() and not answer.exception() else b""
        return (int(status_line.split()[1]) if status_line else None), time.monotonic()
    finally:
        answer.cancel()
        writer.close()


async def probe_healthz(port: int, stop: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        while not stop.is_set():
            started = time.monotonic()
            await http.get("/healthz")
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(PROBE_INTERVAL)


async def probe_acks(port: int, token: bytes, stop: asyncio.Event, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = FrameBuffer()

    async def next_event() -> Any:
        while True:
            frame = frames.next_frame()
            if frame is not None:
                return decode(frame)  # type: ignore[arg-type]  # the server's frames have good CRCs
            data = await reader.read(4096)
            if not data:
                raise ConnectionError("the listener closed the connection")
            frames.feed(data)

    writer.write(encode(Login(1, IMEI, 0x0102, token)))
    ack = await next_event()
    assert isinstance(ack, LoginAck) and ack.status == 0, ack
    seq = 1
    try:
        while not stop.is_set():
            seq = seq % 65535 + 1
            started = time.monotonic()
            writer.write(encode(Heartbeat(seq, int(time.time()), 90, -70)))
            await next_event()
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(PROBE_INTERVAL)
    finally:
        writer.close()


async def rss_peak(source: Path, size: int) -> dict[str, Any]:
    async with Server(source) as server:
        before, peak_before = server.memory_mb("VmRSS"), server.memory_mb("VmHWM")
        status, _ = await upload(server.http_port, size)
        return {
            "status": status,
            "rss_before_mb": before,
            "rss_peak_before_mb": peak_before,
            "rss_peak_mb": server.memory_mb("VmHWM"),
        }


async def stall(source: Path, size: int) -> dict[str, Any]:
    async with Server(source) as server:
        token = await server.register_device()
        stop = asyncio.Event()
        acks: list[float] = []
        healthz: list[float] = []
        probes = [
            asyncio.create_task(probe_acks(server.listener_port, token, stop, acks)),
            asyncio.create_task(probe_healthz(server.http_port, stop, healthz)),
        ]
        await asyncio.sleep(1)
        acks.clear()
        healthz.clear()  # only what happens from the upload on counts
        status, _ = await upload(server.http_port, size)
        await asyncio.sleep(1)
        stop.set()
        await asyncio.gather(*probes)
        return {"status": status, "ack_max_ms": max(acks) * 1000, "healthz_max_ms": max(healthz) * 1000}


def _spread(values: list[float]) -> str:
    return f"{min(values):.0f} / {statistics.median(values):.0f} / {max(values):.0f}"


async def run(*, source: Path, runs: int, rss_bytes: int, stall_bytes: int) -> dict[str, Any]:
    peaks = [await rss_peak(source, rss_bytes) for _ in range(runs)]
    stalls = [await stall(source, stall_bytes) for _ in range(runs)]
    return {"source": str(source), "runs": runs, "rss": peaks, "stall": stalls}


def report(figures: dict[str, Any]) -> None:
    peaks, stalls = figures["rss"], figures["stall"]
    print_table(
        f"hostile HTTP bodies against `solewatch run` from {figures['source']} "
        f"({figures['runs']} runs; min / median / max)",
        [
            ("answer to the 400 MB login", ", ".join(str(p["status"]) for p in peaks)),
            ("RSS before the upload (MB)", _spread([p["rss_before_mb"] for p in peaks])),
            ("RSS peak before the upload (MB)", _spread([p["rss_peak_before_mb"] for p in peaks])),
            ("RSS peak after it (MB)", _spread([p["rss_peak_mb"] for p in peaks])),
            ("answer to the 300 MB login", ", ".join(str(s["status"]) for s in stalls)),
            ("longest ACK wait (ms)", _spread([s["ack_max_ms"] for s in stalls])),
            ("longest /healthz wait (ms)", _spread([s["healthz_max_ms"] for s in stalls])),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="the solewatch checkout to run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rss-mb", type=int, default=400)
    parser.add_argument("--stall-mb", type=int, default=300)
    args = parser.parse_args()
    figures = asyncio.run(
        run(
            source=args.source.resolve(),
            runs=args.runs,
            rss_bytes=args.rss_mb * 1_000_000,
            stall_bytes=args.stall_mb * 1_000_000,
        )
    )
    report(figures)


if __name__ == "__main__":
    main()
