"""`solewatch bench fleet`: a real fleet's shape, many insoles each sending one small frame at a time.

19,000 insoles (by default; each load generator process holds its share under
the 20,000 open-file limit) log in, then each sends one POSITION a second in
its own TCP segment, phases spread evenly over the second, plus a HEARTBEAT
every 30 s and an ACTIVITY every 20 s (bench/fleet_loadgen.py). The same
pattern drives first the raw baseline (bench/baseline.py: framing, CRC and an
ACK at once) and then `solewatch run`, in the same invocation, so the ratio
of their CPU per frame holds on a shared, noisy machine.

Figures: ACK latency at the insoles (from a frame's write to its ACK's
arrival, every frame written in the measuring window), frames acknowledged
per second, the server process's CPU per 1,000 frames acknowledged over the
window, and frames never acknowledged (`lost`: no ACK within 10 s of the last
frame written, GRACE_S in bench/fleet_loadgen.py). `load_avg_1m` is the
machine's load average when each phase ended: above the 2 cores' count, the
server under test was not alone on them, and its latency says so.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    ROOT,
    CpuSampler,
    percentile,
    print_table,
    process_rss_mb,
    register_devices,
    start_baseline,
    start_solewatch,
)

# Frames a second each insole offers: one POSITION, a HEARTBEAT every 30 s, an ACTIVITY every 20 s.
FRAMES_PER_INSOLE_S = 1 + 1 / 30 + 1 / 20
FILES_SPARE = 200  # a process's open files besides its device connections (the server's store, its HTTP port...)


async def drive(
    port: int, pid: int, credentials: list[tuple[str, str]], *, processes: int, warmup: float, seconds: float
) -> dict[str, Any]:
    """The fleet's pattern against the server `pid` listening on `port`; its figures, generators' merged."""
    fleet = len(credentials)
    procs, result_paths = [], []
    for index in range(processes):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.fleet_loadgen",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        result_path = Path(tempfile.mkstemp(prefix="fleet-loadgen-", suffix=".json")[1])
        spec = {
            "host": "127.0.0.1",
            "port": port,
            # Insole n's phase is n / fleet: the processes' insoles interleave over the second.
            "insoles": [(imei, token, n) for n, (imei, token) in enumerate(credentials) if n % processes == index],
            "fleet": fleet,
            "warmup": warmup,
            "seconds": seconds,
            "result_path": str(result_path),
        }
        assert proc.stdin is not None
        proc.stdin.write(orjson.dumps(spec) + b"\n")
        await proc.stdin.drain()
        procs.append(proc)
        result_paths.append(result_path)
    try:
        login_started = time.monotonic()
        for proc in procs:  # each says when its insoles are logged in
            assert proc.stdout is not None
            await proc.stdout.readline()
        login_s = time.monotonic() - login_started
        start_at = time.time() + 0.3  # every generator has read it by then
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(orjson.dumps({"start_at": start_at}) + b"\n")
            await proc.stdin.drain()
        async with CpuSampler(pid) as sampler:
            for proc in procs:
                await proc.wait()
        results = [orjson.loads(path.read_bytes()) for path in result_paths]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for path in result_paths:
            path.unlink(missing_ok=True)
    window = results[0]["window"]
    acked_in_window = sum(r["acked_in_window"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    server_cpu = sampler.cpu_between(*window)
    return {
        "logged_in": sum(r["logged_in"] for r in results),
        "login_s": login_s,
        "disconnected": sum(r["disconnected"] for r in results),
        "sent": sum(r["sent"] for r in results),
        "acked": sum(r["acked"] for r in results),
        "refused": sum(r["refused"] for r in results),
        "lost": sum(r["lost"] for r in results),
        "acked_fps": acked_in_window / seconds,
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        # None when no ACK came in the window (a server far behind): no frame to share the CPU among.
        "cpu_ms_per_1k": server_cpu * 1000 / acked_in_window * 1000 if acked_in_window else None,
        "server_cpu_share": server_cpu / seconds,  # of one core
        "rss_mb": process_rss_mb(pid),
        "loadgen_cpu_share": sum(r["cpu_seconds"] for r in results) / seconds,
        "send_lag_max_ms": max(r["lag_max_ms"] for r in results),
        "load_avg_1m": os.getloadavg()[0],
        "late_frames": sum(r["late_frames"] for r in results),
    }


async def run(
    *, connections: int = 19_000, seconds: float = 30.0, warmup: float = 3.0, processes: int = 2
) -> dict[str, Any]:
    # Each generator holds its share of the connections; the server holds them all (and its own files).
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - FILES_SPARE
    if connections > files:
        raise SystemExit(f"solewatch bench fleet: one server process can hold {files:,} connections here, not more")
    if -(-connections // processes) > files:
        raise SystemExit(
            f"solewatch bench fleet: a load generator process can hold {files:,} connections here; use more --processes"
        )
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        credentials = await register_devices(data_dir, connections)
        baseline, port = await start_baseline()
        try:
            base = await drive(port, baseline.pid, credentials, processes=processes, warmup=warmup, seconds=seconds)
        finally:
            await baseline.stop()
        server, port, _ = await start_solewatch(data_dir, max_connections=connections + 100)
        try:
            durable = await drive(port, server.pid, credentials, processes=processes, warmup=warmup, seconds=seconds)
        finally:
            await server.stop()
    two = _round2
    return {
        "mode": "embedded",
        "connections": connections,
        "processes": processes,
        "seconds": seconds,
        "offered_fps": round(connections * FRAMES_PER_INSOLE_S),
        "logged_in": durable["logged_in"],
        "login_s": two(durable["login_s"]),
        "acked_fps": round(durable["acked_fps"]),
        "ack_p50_ms": two(durable["p50_ms"]),
        "ack_p99_ms": two(durable["p99_ms"]),
        "ack_max_ms": two(durable["max_ms"]),
        "ack_samples": durable["samples"],
        "sent": durable["sent"],
        "lost": durable["lost"],
        "refused": durable["refused"],
        "disconnected": durable["disconnected"],
        "cpu_ms_per_1k": two(durable["cpu_ms_per_1k"]),
        "cpu_share": two(durable["server_cpu_share"]),
        "rss_mb": round(durable["rss_mb"], 1),
        "loadgen_cpu_share": two(durable["loadgen_cpu_share"]),
        "send_lag_max_ms": two(durable["send_lag_max_ms"]),
        "late_frames": durable["late_frames"],
        "load_avg_1m": two(durable["load_avg_1m"]),
        "baseline_logged_in": base["logged_in"],
        "baseline_acked_fps": round(base["acked_fps"]),
        "baseline_ack_p50_ms": two(base["p50_ms"]),
        "baseline_ack_p99_ms": two(base["p99_ms"]),
        "baseline_ack_max_ms": two(base["max_ms"]),
        "baseline_lost": base["lost"],
        "baseline_cpu_ms_per_1k": two(base["cpu_ms_per_1k"]),
        "baseline_cpu_share": two(base["server_cpu_share"]),
        "baseline_loadgen_cpu_share": two(base["loadgen_cpu_share"]),
        "baseline_send_lag_max_ms": two(base["send_lag_max_ms"]),
        "baseline_late_frames": base["late_frames"],
        "baseline_load_avg_1m": two(base["load_avg_1m"]),
        "cpu_ratio": (
            two(durable["cpu_ms_per_1k"] / base["cpu_ms_per_1k"])
            if durable["cpu_ms_per_1k"] and base["cpu_ms_per_1k"]
            else None
        ),
    }


def _round2(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def report(figures: dict[str, Any]) -> None:
    f = figures
    print_table(
        f"fleet: {f['connections']:,} insoles, one frame per segment, ~{f['offered_fps']:,} frames/s offered",
        [
            ("logged in", f"{f['logged_in']:,} of {f['connections']:,} (in {f['login_s']} s)"),
            ("acknowledged frames/s", f"{f['acked_fps']:,} (baseline {f['baseline_acked_fps']:,})"),
            (
                "ACK latency p50 / p99 / max",
                f"{f['ack_p50_ms']} / {f['ack_p99_ms']} / {f['ack_max_ms']} ms ({f['ack_samples']:,} frames)",
            ),
            (
                "baseline ACK latency p50 / p99 / max",
                f"{f['baseline_ack_p50_ms']} / {f['baseline_ack_p99_ms']} / {f['baseline_ack_max_ms']} ms",
            ),
            (
                "lost (no ACK 10 s after the last frame)",
                f"{f['lost']:,} of {f['sent']:,} (baseline {f['baseline_lost']:,})",
            ),
            ("refused / disconnected", f"{f['refused']:,} / {f['disconnected']:,}"),
            (
                "server CPU per 1,000 frames",
                f"{f['cpu_ms_per_1k']} ms (baseline {f['baseline_cpu_ms_per_1k']} ms): ratio {f['cpu_ratio']}",
            ),
            ("server CPU, of one core", f"{f['cpu_share']} (baseline {f['baseline_cpu_share']})"),
            ("server RSS", f"{f['rss_mb']} MB"),
            (
                "load generators' CPU, of one core",
                f"{f['loadgen_cpu_share']} (baseline phase {f['baseline_loadgen_cpu_share']}); "
                f"latest send {f['send_lag_max_ms']} ms after its time, {f['late_frames']:,} frames over 5 ms late",
            ),
            ("machine load average (1 min)", f"{f['load_avg_1m']} (baseline phase {f['baseline_load_avg_1m']})"),
        ],
    )
