"""`solewatch bench soak`: a long run at a steady rate, sampled every minute, for leaks and drift.

An all-in-one solewatch; insoles send POSITION frames at `rate` for `minutes`
while `clients` dashboards (bench/dashboard_clients.py) watch their tenant.
The load runs in periods of `sample_every` seconds (each a fresh load
generator run: its insoles log in again, about a second between periods, and
send in a later range of device times, so no frame repeats another and a late
event of one period never counts as showing a frame of the next).
After each period: the server's RSS, its CPU over the period, and the p99 of
that period's sampled frames from send to `position` event, pooled over every
dashboard. The figures: the RSS slope (MB per hour, least squares over the
samples after the first 2 minutes: start-up caches fill there) and the p99
drift, the pooled p99 of the last third of the samples against the first
third's.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from bench.common import (
    CpuSampler,
    percentile,
    print_table,
    process_rss_mb,
    register_devices,
    run_loadgens,
)
from bench.dashboards import DashboardProcesses, sign_in, start_watched_solewatch

SETTLE_S = 120.0  # RSS samples before this (from the start of the load) are left out of the slope


def least_squares_slope(points: list[tuple[float, float]]) -> float:
    """The slope of the least-squares line through (x, y) points (0 with fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def pooled_p99_ms(delays: list[array[float]]) -> float:
    pooled = sorted(d for period in delays for d in period)
    return round(percentile(pooled, 0.99) * 1000, 2) if pooled else math.nan


async def run(
    *,
    minutes: float = 30.0,
    sample_every: float = 60.0,
    clients: int = 10,
    connections: int = 200,
    rate: int = 5000,
    processes: int = 2,
    deflate: bool = False,
) -> dict[str, Any]:
    periods = max(2, round(minutes * 60 / sample_every))
    # Device seconds between periods' time ranges: more than a period's frames per insole (one second each).
    ts_spacing = int(rate / connections * (sample_every + 10)) + 1000
    samples: list[dict[str, Any]] = []
    delays: list[array[float]] = []
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        credentials = await register_devices(data_dir, connections)
        server, port, http_port = await start_watched_solewatch(
            data_dir,
            connections,
            access_token_ttl=int(minutes * 60 + 3600),  # the dashboards' sockets outlive the run
        )
        dashboards = DashboardProcesses()
        try:
            url = f"http://127.0.0.1:{http_port}"
            token = await sign_in(http_port)
            await dashboards.start(url, token, clients=clients, processes=min(2, clients), deflate=deflate)
            started = time.time()
            async with CpuSampler(server.pid) as cpu:
                for index in range(periods):
                    clients_cpu, began = dashboards.cpu_seconds(), time.time()
                    load = await run_loadgens(
                        port,
                        credentials,
                        processes=processes,
                        seconds=sample_every,
                        warmup=0.5,
                        window=8,
                        rate=rate,
                        record_sends=True,
                        ts_offset=-(periods - index) * ts_spacing,  # forward in device time, as insoles go
                    )
                    clients_cpu = (dashboards.cpu_seconds() - clients_cpu) / (time.time() - began)
                    await asyncio.sleep(0.5)  # let the period's last events arrive
                    start, end = load["window"]
                    measured = await dashboards.measure(load["sends"], (start, end))
                    period = array("d", sorted(d for client in measured["clients"] for d in client["delays"]))
                    delays.append(period)
                    samples.append(
                        {
                            "minute": round((end - started) / 60, 3),
                            "rss_mb": round(process_rss_mb(server.pid), 1),
                            "p99_ms": round(percentile(list(period), 0.99) * 1000, 2) if period else math.nan,
                            "cpu_cores": round(cpu.cpu_between(start, end) / (end - start), 3),
                            "dashboards_cpu_cores": round(clients_cpu, 3),
                            "acked_fps": round(load["fps"]),
                            "missing": sum(client["missing"] for client in measured["clients"]),
                            "cut": measured["cut"],
                        }
                    )
        finally:
            await dashboards.stop()
            await server.stop()
    settled = [(s["minute"] * 60, s["rss_mb"]) for s in samples if s["minute"] * 60 > SETTLE_S]
    if len(settled) < 2:  # a short run: every sample
        settled = [(s["minute"] * 60, s["rss_mb"]) for s in samples]
    third = max(1, len(samples) // 3)
    return {
        "minutes": samples[-1]["minute"],
        "rate": rate,
        "clients": clients,
        "deflate": deflate,
        "connections": connections,
        "samples": len(samples),
        "rss_slope_mb_per_h": round(least_squares_slope(settled) * 3600, 2),
        "rss_slope_samples": len(settled),
        "rss_first_mb": samples[0]["rss_mb"],
        "rss_last_mb": samples[-1]["rss_mb"],
        "p99_first_third_ms": pooled_p99_ms(delays[:third]),
        "p99_last_third_ms": pooled_p99_ms(delays[-third:]),
        "missing": sum(s["missing"] for s in samples),
        "dashboards_cut": samples[-1]["cut"],
        **{f"per_sample_{key}": [s[key] for s in samples] for key in ("minute", "rss_mb", "p99_ms", "cpu_cores")},
        "per_sample_acked_fps": [s["acked_fps"] for s in samples],
        "per_sample_dashboards_cpu_cores": [s["dashboards_cpu_cores"] for s in samples],
        "per_sample_missing": [s["missing"] for s in samples],
    }


def report(figures: dict[str, Any]) -> None:
    rows = [
        (
            f"minute {minute:.2f}",
            f"RSS {rss} MB, p99 {p99} ms ({missing:,} missing), server CPU {cores} cores"
            f" (the dashboards' {clients}), acked {fps:,} frames/s",
        )
        for minute, rss, p99, missing, cores, clients, fps in zip(
            figures["per_sample_minute"],
            figures["per_sample_rss_mb"],
            figures["per_sample_p99_ms"],
            figures["per_sample_missing"],
            figures["per_sample_cpu_cores"],
            figures["per_sample_dashboards_cpu_cores"],
            figures["per_sample_acked_fps"],
            strict=True,
        )
    ]
    rows.append(
        (
            "RSS slope",
            f"{figures['rss_slope_mb_per_h']:+} MB/h over {figures['rss_slope_samples']} samples"
            f" ({figures['rss_first_mb']} → {figures['rss_last_mb']} MB)",
        )
    )
    rows.append(
        (
            "p99 drift",
            f"first third {figures['p99_first_third_ms']} ms, last third {figures['p99_last_third_ms']} ms"
            f" ({figures['missing']} samples missing, {figures['dashboards_cut']} dashboards cut)",
        )
    )
    print_table(
        f"soak: {figures['minutes']} min, {figures['connections']} insoles at {figures['rate']:,} frames/s,"
        f" {figures['clients']} dashboards → solewatch run",
        rows,
    )
