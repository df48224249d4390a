"""What the benchmarks share: device credentials, server processes, load generators, figures."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import httpx
import orjson

from shared.store import hash_device_token
from shared.store.sqlite import SqliteStore

# Where this code was imported from: a checkout, or site-packages when installed. The processes
# the benches start run there and so import the same code (in a checkout, even with no install).
ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def register_devices(data_dir: Path, count: int, *, first: int = 0) -> list[tuple[str, str]]:
    """`count` devices in the embedded store (IMEIs from number `first` on, named
    `bench N`); returns (imei, token hex) pairs."""
    store = SqliteStore(data_dir / "solewatch.db", synchronous="NORMAL")
    await store.open()
    try:
        tenant_id = await store.ensure_tenant("default")
        credentials = []
        for i in range(first, first + count):
            imei = f"35{i:013d}"
            token = secrets.token_bytes(16)
            await store.add_device(
                tenant_id=tenant_id, imei=imei, name=f"bench {i}", token_hash=hash_device_token(token)
            )
            credentials.append((imei, token.hex()))
        return credentials
    finally:
        await store.close()


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ServerProcess:
    """A server under test, as its own process."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None):
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> ServerProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def start_baseline() -> tuple[ServerProcess, int]:
    server = await ServerProcess([sys.executable, "-m", "bench.baseline", "0"]).start()
    assert server.proc is not None and server.proc.stdout is not None
    port = int((await server.proc.stdout.readline()).decode())
    return server, port


# The benches' servers speak XSole only, and several may run side by side (listener replicas):
# the tracker protocols' fixed ports (5023, 5013, 5093, 5027) stay off.
TRACKER_PORTS_OFF = {f"SOLEWATCH_{name}_PORT": "0" for name in ("GT06", "H02", "WATCH", "TELTONIKA")}


async def start_solewatch(
    data_dir: Path, command: str = "run", *, env: dict[str, str] | None = None, **settings: Any
) -> tuple[ServerProcess, int, int]:
    """solewatch `command` as a process, once ready; `settings` become SOLEWATCH_* variables, `env` is added as is."""
    listener_port, http_port = free_port(), free_port()
    env = {
        **TRACKER_PORTS_OFF,  # unless a bench asks for one, in `env` or `settings`
        **(env or {}),
        "SOLEWATCH_DATA_DIR": str(data_dir),
        "SOLEWATCH_LISTENER_PORT": str(listener_port),
        "SOLEWATCH_HTTP_PORT": str(http_port),
        "SOLEWATCH_BIND": "127.0.0.1",
        "SOLEWATCH_LOG_LEVEL": "warning",
        **{f"SOLEWATCH_{k.upper()}": str(v) for k, v in settings.items()},
    }
    server = await ServerProcess([sys.executable, "-m", "services.cli", command], env).start()
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"http://127.0.0.1:{http_port}/readyz")).status_code == 200:
                    return server, listener_port, http_port
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    await server.stop()
    raise RuntimeError("solewatch did not become ready")


async def run_loadgens(
    port: int | list[int],
    credentials: list[tuple[str, str]],
    *,
    processes: int,
    stop: asyncio.Event | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """Run the load generators in parallel processes and merge their figures.

    With several ports (several listener processes), load generator i drives port i modulo their number.
    Setting `stop` (once they are sending) ends their window before `seconds` have passed.
    """
    ports = port if isinstance(port, list) else [port]
    shares = [credentials[i::processes] for i in range(processes)]
    procs = []
    result_paths: list[Path] = []
    for index, share in enumerate(shares):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.loadgen",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        result_path = Path(tempfile.mkstemp(prefix="loadgen-", suffix=".json")[1])
        result_paths.append(result_path)
        payload = {
            "host": "127.0.0.1",
            "port": ports[index % len(ports)],
            "credentials": share,
            "result_path": str(result_path),
            **spec,
        }
        # Each process offers its share of the load, in its own range of timestamps.
        payload["rate"] = spec.get("rate", 0) / processes
        payload["ts_offset"] = spec.get("ts_offset", 0) - index * 7
        assert proc.stdin is not None
        proc.stdin.write(orjson.dumps(payload) + b"\n")
        proc.stdin.close()
        procs.append(proc)
    if stop is not None:
        await _stop_early(procs, stop)
    for proc in procs:
        await proc.wait()
    results = [orjson.loads(path.read_bytes()) for path in result_paths]
    for path in result_paths:
        path.unlink()
    sends = [s for r in results for s in r.get("sends", [])]
    windows = [r["window"] for r in results]
    latencies = sorted(x for r in results for x in r["latencies"])
    seconds = max(r["seconds"] for r in results) or 1.0
    return {
        "acked": sum(r["acked"] for r in results),
        "refused": sum(r["refused"] for r in results),
        "logged_in": sum(r["logged_in"] for r in results),
        "lost": sum(r["lost"] for r in results),
        "fps": sum(r["acked"] for r in results) / seconds,
        "seconds": seconds,
        "loadgen_cpu_seconds": sum(r["cpu_seconds"] for r in results),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "window": (min(w[0] for w in windows), max(w[1] for w in windows)),
        "sends": sends,
    }


async def _stop_early(procs: list[asyncio.subprocess.Process], stop: asyncio.Event) -> None:
    """Once `stop` is set, SIGTERM to the load generators still running (they then report)."""
    exited: asyncio.Future[Any] = asyncio.gather(*(proc.wait() for proc in procs))
    asked: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    await asyncio.wait((exited, asked), return_when=asyncio.FIRST_COMPLETED)
    asked.cancel()
    if stop.is_set():
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
    await exited


class ProcessSampler:
    """Samples a figure of a process (`read(pid)`) every `every` seconds, so that any wall-clock
    window can be read afterwards."""

    def __init__(self, pid: int, read: Callable[[int], float], every: float):
        self.pid = pid
        self.every = every
        self._read = read
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _run(self) -> None:
        while True:
            self.samples.append((time.time(), self._read(self.pid)))
            await asyncio.sleep(self.every)


class RssSampler(ProcessSampler):
    """A process's RSS, to read any window's largest afterwards."""

    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(pid, process_rss_mb, every)

    def max_between(self, start: float, end: float) -> float:
        return max((rss for t, rss in self.samples if start <= t <= end), default=process_rss_mb(self.pid))


class CpuSampler(ProcessSampler):
    """A process's CPU time, to read what it used in any window afterwards."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(pid, process_cpu_seconds, every)

    def cpu_between(self, start: float, end: float) -> float:
        def at(t: float) -> float:
            before = [s for s in self.samples if s[0] <= t]
            after = [s for s in self.samples if s[0] >= t]
            if not before or not after:
                return (before or after)[-1 if before else 0][1]
            (t0, c0), (t1, c1) = before[-1], after[0]
            return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)

        return at(end) - at(start)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    sys.stdout.write(f"\n{title}\n{'-' * len(title)}\n")
    for name, value in rows:
        sys.stdout.write(f"{name.ljust(width)}  {value}\n")
    sys.stdout.flush()
