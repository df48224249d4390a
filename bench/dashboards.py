"""`solewatch bench dashboards`: many dashboards of one tenant at a high rate of positions.

An all-in-one solewatch; insoles (load generator processes) send POSITION
frames at `rate`; `clients` dashboards, signed in as the tenant's admin, run in
a few processes of their own (bench/dashboard_clients.py). Two phases, in one
run: *steady* (the dashboards only), then *stalled*: the same plus one more
dashboard that stops reading its connection once signed in. Each sampled frame
is timed from its send to the first `position` event of its insole at its time
or later, at every dashboard (as bench/latency.py does for one); a phase
reports the slowest dashboard's p50/p99 (the one with the highest p99), the
events each dashboard received per second, the server's CPU and RSS. The
stalled phase is compared with the steady one: the others' p99 ratio, the RSS
growth, and whether the server cut the stalled dashboard
(services/wss/backpressure.py; its timeout is set to a third of the phase).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import (
    ROOT,
    CpuSampler,
    RssSampler,
    ServerProcess,
    percentile,
    print_table,
    process_cpu_seconds,
    process_rss_mb,
    register_devices,
    run_loadgens,
    start_solewatch,
)

ADMIN = ("bench@solewatch.local", "bench password 1")
PHASES = ("steady", "stalled")


class DashboardProcesses:
    """`clients` dashboards spread over `processes` processes of bench/dashboard_clients.py."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(
        self, url: str, token: str, *, clients: int, processes: int, stall: bool = False, deflate: bool = False
    ) -> None:
        shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
        for share in filter(None, shares):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.dashboard_clients",
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert proc.stdin is not None
            spec = {"url": url, "token": token, "clients": share, "stall": stall, "deflate": deflate}
            proc.stdin.write(orjson.dumps(spec) + b"\n")
            await proc.stdin.drain()
            self.procs.append(proc)
        for proc in self.procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError("dashboards did not connect")

    async def measure(self, sends: list[tuple[str, int, float]], window: tuple[float, float]) -> dict[str, Any]:
        """Every dashboard's delays for `sends` and its events per second in `window`; then they forget."""
        with tempfile.TemporaryDirectory(prefix="solewatch-dashboards-") as tmp:
            sends_path = Path(tmp) / "sends.json"
            sends_path.write_bytes(orjson.dumps(sends))
            results = []
            for index, proc in enumerate(self.procs):
                result_path = Path(tmp) / f"result-{index}.json"
                assert proc.stdin is not None and proc.stdout is not None
                command = {"sends_path": str(sends_path), "window": list(window), "result_path": str(result_path)}
                proc.stdin.write(orjson.dumps(command) + b"\n")
                await proc.stdin.drain()
                await asyncio.wait_for(proc.stdout.readline(), 120)
                results.append(orjson.loads(result_path.read_bytes()))
        return {
            "clients": [client for result in results for client in result["clients"]],
            "cut": sum(result["cut"] for result in results),
        }

    def cpu_seconds(self) -> float:
        """The CPU time the dashboards' processes have used so far: they share the cores with the server."""
        return sum(process_cpu_seconds(proc.pid) for proc in self.procs if proc.returncode is None)

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.stdin is not None:
                proc.stdin.write(b'{"quit": true}\n')
                proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def start_watched_solewatch(data_dir: Path, connections: int, **settings: Any) -> tuple[ServerProcess, int, int]:
    """`solewatch run` on `data_dir` with the benches' admin (for dashboards to sign in as) and room for
    `connections` insoles; `settings` as `start_solewatch` takes them."""
    return await start_solewatch(
        data_dir,
        command="run",
        admin_email=ADMIN[0],
        admin_password=ADMIN[1],
        max_connections=connections + 100,
        **settings,
    )


async def sign_in(http_port: int) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
        answer = await http.post("/api/v1/auth/token", json={"email": ADMIN[0], "password": ADMIN[1]})
        answer.raise_for_status()
        return str(answer.json()["access_token"])


async def live_metrics(http_port: int) -> dict[str, float]:
    """The wss_* samples of the server's /metrics, and the outbox's backlog (telemetry not yet relayed)."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{http_port}/metrics")).text
    return {
        name: float(value)
        for line in text.splitlines()
        if line.startswith(("wss_", "outbox_backlog")) and len(parts := line.split()) == 2
        for name, value in [parts]
    }


def phase_figures(name: str, measured: dict[str, Any], seconds: float) -> dict[str, Any]:
    clients = measured["clients"]
    timed = [c for c in clients if c["delays"]] or clients  # one with no event in time counts in `missing`
    slowest = max(timed, key=lambda c: percentile(c["delays"], 0.99) if c["delays"] else 0.0)
    pooled = sorted(d for c in clients for d in c["delays"])
    rates = sorted(c["events_per_s"] for c in clients)
    return {
        f"{name}_slowest_p50_ms": round(percentile(slowest["delays"], 0.5) * 1000, 2),
        f"{name}_slowest_p99_ms": round(percentile(slowest["delays"], 0.99) * 1000, 2),
        f"{name}_slowest_max_ms": round(slowest["delays"][-1] * 1000, 2) if slowest["delays"] else None,
        f"{name}_all_p50_ms": round(percentile(pooled, 0.5) * 1000, 2),
        f"{name}_all_p99_ms": round(percentile(pooled, 0.99) * 1000, 2),
        f"{name}_samples": len(pooled),
        f"{name}_missing": sum(c["missing"] for c in clients),
        f"{name}_clients_without_samples": len(clients) - len([c for c in clients if c["delays"]]),
        f"{name}_events_per_s_min": round(rates[0]),
        f"{name}_events_per_s_median": round(statistics.median(rates)),
        f"{name}_events_per_s_total": round(sum(rates)),
    }


async def run(
    *,
    clients: int = 100,
    connections: int = 200,
    rate: int = 10_000,
    seconds: float = 10.0,
    warmup: float = 2.0,
    processes: int = 2,
    client_processes: int = 4,
    deflate: bool = False,
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "clients": clients,
        "connections": connections,
        "rate": rate,
        "seconds": seconds,
        "deflate": deflate,
    }
    slow_timeout = max(seconds / 3, 0.5)
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        credentials = await register_devices(data_dir, connections)
        server, port, http_port = await start_watched_solewatch(
            data_dir,
            connections,
            http_max_connections_per_address=clients + 100,
            wss_slow_reader_timeout=slow_timeout,
        )
        dashboards, stalled = DashboardProcesses(), DashboardProcesses()
        try:
            token = await sign_in(http_port)
            url = f"http://127.0.0.1:{http_port}"
            await dashboards.start(
                url, token, clients=clients, processes=min(client_processes, clients), deflate=deflate
            )
            async with CpuSampler(server.pid) as cpu, RssSampler(server.pid) as rss:
                for index, name in enumerate(PHASES):
                    if name == "stalled":
                        await stalled.start(url, token, clients=1, processes=1, stall=True)
                    clients_cpu = dashboards.cpu_seconds()
                    began = time.time()
                    load = await run_loadgens(
                        port,
                        credentials,
                        processes=processes,
                        seconds=seconds,
                        warmup=warmup,
                        window=8,
                        rate=rate,
                        record_sends=True,
                        # later phases in later device times: a late event of the phase before never
                        # counts as showing one of this phase's frames
                        ts_offset=-(len(PHASES) - index) * 100_000,
                    )
                    clients_cpu = (dashboards.cpu_seconds() - clients_cpu) / (time.time() - began)
                    await asyncio.sleep(1.0)  # let the last events arrive
                    start, end = load["window"]
                    figures |= phase_figures(name, await dashboards.measure(load["sends"], (start, end)), seconds)
                    figures |= {
                        f"{name}_acked_fps": round(load["fps"]),
                        f"{name}_server_cpu_cores": round(cpu.cpu_between(start, end) / (end - start), 3),
                        f"{name}_dashboards_cpu_cores": round(clients_cpu, 3),
                        f"{name}_rss_max_mb": round(rss.max_between(start, end), 1),
                        f"{name}_rss_end_mb": round(process_rss_mb(server.pid), 1),
                    }
                    metrics = await live_metrics(http_port)
                    figures[f"{name}_sessions_behind"] = round(metrics.get("wss_sessions_behind", 0))
                    figures[f"{name}_outbox_backlog"] = round(metrics.get("outbox_backlog", 0))
            figures["stalled_cut"] = (await stalled.measure([], (0.0, 1.0)))["cut"]
            metrics = await live_metrics(http_port)
            figures["positions_coalesced"] = round(metrics.get("wss_positions_coalesced_total", 0))
            figures["slow_readers_disconnected"] = round(metrics.get("wss_slow_readers_disconnected_total", 0))
        finally:
            await stalled.stop()
            await dashboards.stop()
            await server.stop()
    figures["slow_reader_timeout_s"] = slow_timeout
    figures["stalled_p99_ratio"] = round(figures["stalled_slowest_p99_ms"] / figures["steady_slowest_p99_ms"], 3)
    figures["stalled_rss_growth_mb"] = round(figures["stalled_rss_max_mb"] - figures["steady_rss_max_mb"], 1)
    return figures


def report(figures: dict[str, Any]) -> None:
    rows = []
    for name in PHASES:
        rows.append(
            (
                f"{name}: slowest dashboard",
                f"p50 {figures[f'{name}_slowest_p50_ms']} ms, p99 {figures[f'{name}_slowest_p99_ms']} ms,"
                f" max {figures[f'{name}_slowest_max_ms']} ms (all dashboards: p99 {figures[f'{name}_all_p99_ms']} ms;"
                f" {figures[f'{name}_samples']:,} samples, {figures[f'{name}_missing']:,} missing;"
                f" {figures[f'{name}_clients_without_samples']} dashboards timed none)",
            )
        )
        rows.append(
            (
                f"{name}: events/s per dashboard",
                f"min {figures[f'{name}_events_per_s_min']:,}, median {figures[f'{name}_events_per_s_median']:,}"
                f" (all: {figures[f'{name}_events_per_s_total']:,}/s); acked {figures[f'{name}_acked_fps']:,} frames/s",
            )
        )
        rows.append(
            (
                f"{name}: server",
                f"CPU {figures[f'{name}_server_cpu_cores']} cores (the dashboards'"
                f" {figures[f'{name}_dashboards_cpu_cores']}), RSS max {figures[f'{name}_rss_max_mb']} MB,"
                f" at the end {figures[f'{name}_rss_end_mb']} MB; at the end, dashboards behind"
                f" {figures[f'{name}_sessions_behind']}, outbox backlog {figures[f'{name}_outbox_backlog']:,}",
            )
        )
    rows.append(
        (
            "stalled vs steady",
            f"others' p99 ×{figures['stalled_p99_ratio']}, RSS {figures['stalled_rss_growth_mb']:+} MB;"
            f" stalled dashboard cut: {'yes' if figures['stalled_cut'] else 'no'}"
            f" (timeout {figures['slow_reader_timeout_s']:.1f} s);"
            f" positions coalesced {figures['positions_coalesced']:,}",
        )
    )
    print_table(
        f"dashboards: {figures['clients']} Socket.IO dashboards, {figures['connections']} insoles"
        f" at {figures['rate']:,} frames/s → solewatch run"
        f" ({'per-message deflate' if figures['deflate'] else 'no compression'})",
        rows,
    )
