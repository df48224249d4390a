"""`solewatch bench ingest`: durable frames per second against a raw-socket baseline.

Both servers face the same load generators on the same machine in the same
run, so the ratio holds even when the machine is shared and noisy.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CpuSampler,
    print_table,
    process_rss_mb,
    register_devices,
    run_loadgens,
    start_baseline,
    start_solewatch,
)
from shared.protocols.xsole import Position, encode


async def measure(
    port: int | list[int], pid: int | list[int], credentials: list[tuple[str, str]], **load: Any
) -> dict[str, Any]:
    """Figures of one load run; CPU and RSS summed over the server's processes."""
    pids = pid if isinstance(pid, list) else [pid]
    samplers = [CpuSampler(p) for p in pids]
    for sampler in samplers:
        await sampler.__aenter__()
    try:
        figures = await run_loadgens(port, credentials, **load)
    finally:
        for sampler in samplers:
            await sampler.__aexit__()
    figures["server_cpu_seconds"] = sum(s.cpu_between(*figures["window"]) for s in samplers)
    figures["rss_mb"] = sum(process_rss_mb(p) for p in pids)
    return figures


async def run(
    *,
    connections: int = 1000,
    seconds: float = 10.0,
    warmup: float = 3.0,
    window: int = 8,
    processes: int = 2,
    rate: float = 0.0,
    mode: str = "embedded",
    listeners: int = 2,
) -> dict[str, Any]:
    load = {"processes": processes, "seconds": seconds, "warmup": warmup, "window": window, "rate": rate}
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        credentials = await register_devices(data_dir, connections)

        baseline, port = await start_baseline()
        try:
            base = await measure(port, baseline.pid, credentials, **load)
        finally:
            await baseline.stop()

        if mode == "distributed":
            durable = await _measure_distributed(data_dir, credentials, listeners=listeners, **load)
        else:
            server, port, _ = await start_solewatch(data_dir, max_connections=connections + 100)
            try:
                durable = await measure(port, server.pid, credentials, **load)
            finally:
                await server.stop()

    figures = {
        "mode": mode,
        "listener_processes": listeners if mode == "distributed" else 1,
        "connections": connections,
        "window": window,
        "offered_fps": rate or None,
        "durable_fps": round(durable["fps"]),
        "baseline_fps": round(base["fps"]),
        "ratio": round(durable["fps"] / base["fps"], 3) if base["fps"] else None,
        "ack_p50_ms": round(durable["p50_ms"], 2),
        "ack_p99_ms": round(durable["p99_ms"], 2),
        "baseline_ack_p50_ms": round(base["p50_ms"], 2),
        "baseline_ack_p99_ms": round(base["p99_ms"], 2),
        "cpu_s_per_1000_frames": round(durable["server_cpu_seconds"] / max(durable["acked"], 1) * 1000, 4),
        "baseline_cpu_s_per_1000_frames": round(base["server_cpu_seconds"] / max(base["acked"], 1) * 1000, 4),
        "rss_mb": round(durable["rss_mb"], 1),
        "logged_in": durable["logged_in"],
        "refused": durable["refused"],
        "seconds": round(durable["seconds"], 2),
        **(
            {
                key: round(durable[key]) if key == "stored_fps" else durable[key]
                for key in ("stored_frames", "stored_fps", "writer_drain_s")
            }
            if mode == "distributed"
            else {}
        ),
    }
    return figures


async def _measure_distributed(
    data_dir: Path, credentials: list[tuple[str, str]], *, listeners: int, **load: Any
) -> dict[str, Any]:
    """`listeners` listener processes on private RabbitMQ and Redis servers, storing into one SQLite file.

    ACK 0 means confirmed by RabbitMQ into the storage writer's quorum queue;
    the servers' CPU is not counted in the server figures (they share the two cores).
    """
    from bench.servers import rabbitmq_process, redis_process, started

    amqp = await asyncio.to_thread(started, rabbitmq_process, _subdir(data_dir, "rabbitmq"))
    redis = await asyncio.to_thread(started, redis_process, _subdir(data_dir, "redis"))
    servers = []
    try:
        for _ in range(listeners):
            servers.append(
                await start_solewatch(
                    data_dir,
                    command="listener",
                    amqp_url=amqp.url,
                    redis_url=redis.url,
                    max_connections=len(credentials) + 100,
                    jwt_secret="bench-" + "x" * 40,
                )
            )
        started_at = time.monotonic()
        figures = await measure(
            [port for _, port, _ in servers], [server.pid for server, _, _ in servers], credentials, **load
        )
        load_ended = time.monotonic()
        stored = await _stored_when_settled(data_dir)
        # The writers' sustained rate: everything stored, over the load and the drain after it.
        figures["stored_frames"] = stored
        figures["writer_drain_s"] = round(time.monotonic() - load_ended, 1)
        figures["stored_fps"] = stored / (time.monotonic() - started_at)
        return figures
    finally:
        for server, _, _ in servers:
            await server.stop()
        await asyncio.to_thread(redis.stop_all)
        await asyncio.to_thread(amqp.stop_all)


_POSITION_FRAME = len(encode(Position(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)))


async def _stored_when_settled(data_dir: Path, *, quiet: float = 2.0, limit: float = 180.0) -> int:
    """Positions in the store once the count has not moved for `quiet` seconds."""

    def count() -> int:
        with sqlite3.connect(data_dir / "solewatch.db", timeout=30) as db:
            # The load generators send POSITION frames only, each of _POSITION_FRAME bytes, kept in runs.
            return (
                int(db.execute("SELECT coalesce(sum(length(frames)), 0) FROM frame_runs").fetchone()[0])
                // _POSITION_FRAME
            )

    last, last_change, began = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - last_change < quiet and time.monotonic() - began < limit:
        now_stored = await asyncio.to_thread(count)
        if now_stored != last:
            last, last_change = now_stored, time.monotonic()
        await asyncio.sleep(0.25)
    return last


def _subdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir()
    return path


def report(figures: dict[str, Any]) -> None:
    mode = figures["mode"] + (
        f", {figures['listener_processes']} listener processes" if figures["mode"] == "distributed" else ""
    )
    print_table(
        f"ingest: {figures['connections']} connections, window {figures['window']}, {mode}",
        [
            ("durable frames/s", f"{figures['durable_fps']:,}"),
            ("raw baseline frames/s", f"{figures['baseline_fps']:,}"),
            ("ratio durable / baseline", f"{figures['ratio']:.1%}" if figures["ratio"] else "n/a"),
            ("ACK latency p50 / p99", f"{figures['ack_p50_ms']} / {figures['ack_p99_ms']} ms"),
            ("baseline ACK p50 / p99", f"{figures['baseline_ack_p50_ms']} / {figures['baseline_ack_p99_ms']} ms"),
            (
                "server CPU s per 1,000 frames",
                f"{figures['cpu_s_per_1000_frames']} (baseline {figures['baseline_cpu_s_per_1000_frames']})",
            ),
            ("server RSS", f"{figures['rss_mb']} MB"),
            ("devices logged in", f"{figures['logged_in']}"),
            ("frames refused", f"{figures['refused']}"),
            *(
                [
                    (
                        "stored by the writers, sustained",
                        f"{figures['stored_fps']:,} frames/s ({figures['stored_frames']:,} frames,"
                        f" drained {figures['writer_drain_s']} s after the load)",
                    )
                ]
                if figures["mode"] == "distributed"
                else []
            ),
        ],
    )


async def sweep(
    *,
    connections: int = 1000,
    seconds: float = 4.0,
    warmup: float = 1.5,
    window: int = 8,
    processes: int = 2,
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9, 1.1, 1.5),
) -> dict[str, Any]:
    """Throughput and ACK latency against offered load, for solewatch and the baseline.

    Offered loads are fractions of solewatch's unthrottled throughput, measured first.
    """
    load = {"processes": processes, "seconds": seconds, "warmup": warmup, "window": window}
    points: dict[str, list[dict[str, Any]]] = {"solewatch": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        credentials = await register_devices(data_dir, connections)
        server, port, _ = await start_solewatch(data_dir, max_connections=connections + 100)
        try:
            ceiling = await measure(port, server.pid, credentials, ts_offset=0, **load)
            offered = [round(ceiling["fps"] * f) for f in fractions]
            for index, rate in enumerate(offered, start=1):
                figures = await measure(port, server.pid, credentials, rate=rate, ts_offset=-index * 50_000, **load)
                points["solewatch"].append(_point(rate, figures))
        finally:
            await server.stop()
        baseline, port = await start_baseline()
        try:
            for rate in offered:
                points["baseline"].append(
                    _point(rate, await measure(port, baseline.pid, credentials, rate=rate, **load))
                )
        finally:
            await baseline.stop()
    return {"connections": connections, "window": window, "ceiling_fps": round(ceiling["fps"]), "points": points}


def _point(offered: float, figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "offered_fps": offered,
        "acked_fps": round(figures["fps"]),
        "refused": figures["refused"],
        "p50_ms": round(figures["p50_ms"], 2),
        "p99_ms": round(figures["p99_ms"], 2),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, style, p99_style in (("solewatch", "o-", "o:"), ("baseline", "s--", "s:")):
        pts = result["points"][name]
        offered = [p["offered_fps"] / 1000 for p in pts]
        label = "solewatch (durable, SQLite FULL)" if name == "solewatch" else "raw baseline (frame + CRC + ACK)"
        left.plot(offered, [p["acked_fps"] / 1000 for p in pts], style, label=label)
        right.plot(offered, [p["p50_ms"] for p in pts], style, label=f"{name} p50")
        right.plot(offered, [p["p99_ms"] for p in pts], p99_style, label=f"{name} p99", alpha=0.7)
    left.set_xlabel("offered load (k frames/s)")
    left.set_ylabel("acknowledged (k frames/s)")
    left.set_title(f"Throughput, {result['connections']:,} connections")
    left.grid(alpha=0.3)
    left.legend()
    right.set_xlabel("offered load (k frames/s)")
    right.set_ylabel("ACK latency (ms)")
    right.set_yscale("log")
    right.set_title(f"ACK latency (window {result['window']} frames per device)")
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
