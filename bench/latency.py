"""`solewatch bench latency`: from a frame's send to its `position` event at a dashboard.

Insoles (load generator processes) send POSITION frames at a fixed rate to an
all-in-one solewatch; a dashboard signed in as the tenant's admin receives the
`position` events: by default a lean Engine.IO client in a process of its own
(bench/dashboard_clients.py, about a microsecond per event), or with
`client="socketio"` a python-socketio client in this process, whose task per
event and shared loop add their own delay to what is measured. A telemetry message carries each insole's
newest position of a commit, so a sampled frame counts as shown at the first
`position` event of its insole at its time or later: the delay measured is
how long the map lagged behind the frame. Sends and events are timed on the
machine's wall clock, which both processes share.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import socketio

from bench.common import percentile, print_table, register_devices, run_loadgens
from bench.dashboards import DashboardProcesses, sign_in, start_watched_solewatch


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown_at(events: list[tuple[str, float]], ts: str) -> float | None:
    """When the first event at `ts` or later arrived (ISO-8601 UTC strings compare in time order)."""
    return min((arrival for event_ts, arrival in events if event_ts >= ts), default=None)


async def run(
    *,
    rates: tuple[int, ...] = (1000, 10_000),
    connections: int = 200,
    seconds: float = 10.0,
    warmup: float = 2.0,
    processes: int = 2,
    client: str = "lean",
) -> dict[str, Any]:
    figures: dict[str, Any] = {"mode": "embedded", "connections": connections, "client": client}
    with tempfile.TemporaryDirectory(prefix="solewatch-bench-") as tmp:
        data_dir = Path(tmp)
        credentials = await register_devices(data_dir, connections)
        server, port, http_port = await start_watched_solewatch(data_dir, connections)
        dashboard = socketio.AsyncClient(reconnection=False)
        lean = DashboardProcesses()
        received: dict[str, list[tuple[str, float]]] = {}  # IMEI -> (ts, arrival) of its position events, in order

        async def on_position(data: dict[str, Any]) -> None:
            received.setdefault(data["imei"], []).append((data["ts"], time.time()))

        dashboard.on("position", on_position)

        try:
            base = f"http://127.0.0.1:{http_port}"
            token = await sign_in(http_port)
            if client == "lean":
                await lean.start(base, token, clients=1, processes=1)
            else:
                await dashboard.connect(base, auth={"token": token}, transports=["websocket"], wait_timeout=10)
            for index, rate in enumerate(rates):
                received.clear()
                load = await run_loadgens(
                    port,
                    credentials,
                    processes=processes,
                    seconds=seconds,
                    warmup=warmup,
                    window=8,
                    rate=rate,
                    record_sends=True,
                    ts_offset=-(index + 1) * 100_000,
                )
                await asyncio.sleep(1.0)  # let the last events arrive
                if client == "lean":
                    [timed] = (await lean.measure(load["sends"], load["window"]))["clients"]
                    delays, missing = timed["delays"], timed["missing"]
                else:
                    delays = sorted(
                        shown - sent
                        for imei, ts, sent in load["sends"]
                        if (shown := _shown_at(received.get(imei, []), _iso(ts))) is not None
                    )
                    missing = len(load["sends"]) - len(delays)
                key = f"{rate // 1000}k" if rate >= 1000 else str(rate)
                figures |= {
                    f"rate_{key}_acked_fps": round(load["fps"]),
                    f"rate_{key}_samples": len(delays),
                    f"rate_{key}_missing": missing,
                    f"rate_{key}_p50_ms": round(percentile(delays, 0.5) * 1000, 2),
                    f"rate_{key}_p99_ms": round(percentile(delays, 0.99) * 1000, 2),
                    f"rate_{key}_max_ms": round(delays[-1] * 1000, 2) if delays else None,
                    f"rate_{key}_ack_p99_ms": round(load["p99_ms"], 2),
                }
        finally:
            if dashboard.connected:
                await dashboard.disconnect()
            await lean.stop()
            await server.stop()
    figures["rates"] = list(rates)
    return figures


async def run_repeated(*, runs: int = 3, **options: Any) -> dict[str, Any]:
    """`runs` runs one after the other, each on a fresh solewatch: every figure's median under its
    own key (the keys of one run), its min and max under `_min` and `_max`, each run's as `_runN`."""
    each = []
    for number in range(1, runs + 1):
        sys.stdout.write(f"latency run {number} of {runs}...\n")
        sys.stdout.flush()
        each.append(await run(**options))
    figures: dict[str, Any] = {
        "mode": "embedded",
        "connections": each[0]["connections"],
        "client": each[0].get("client", "lean"),
        "runs": runs,
    }
    figures["rates"] = each[0]["rates"]
    for key, value in each[0].items():
        if key.startswith("rate_") and (value is None or isinstance(value, int | float)):
            values = [one[key] for one in each]
            known = sorted(v for v in values if v is not None)
            figures[key] = statistics.median(known) if known else None
            figures[f"{key}_min"], figures[f"{key}_max"] = (known[0], known[-1]) if known else (None, None)
            figures |= {f"{key}_run{number}": v for number, v in enumerate(values, 1)}
    return figures


def report(figures: dict[str, Any]) -> None:
    runs = figures.get("runs", 1)
    rows = []
    for rate in figures["rates"]:
        key = f"rate_{rate // 1000}k" if rate >= 1000 else f"rate_{rate}"

        def spread(name: str, key: str = key) -> str:
            if runs == 1:
                return f"{figures[f'{key}_{name}']}"
            return " / ".join(str(figures[f"{key}_{name}{end}"]) for end in ("_min", "", "_max"))

        rows += [
            (f"{rate:,} frames/s offered: acked/s", spread("acked_fps")),
            ("  send → position event p50 (ms)", spread("p50_ms")),
            ("  p99 (ms)", spread("p99_ms")),
            ("  max (ms)", spread("max_ms")),
            ("  samples, missing", f"{spread('samples')}; {spread('missing')}"),
        ]
    what = "one run" if runs == 1 else f"min / median / max of {runs} runs, each on a fresh process"
    dashboard = "a lean Engine.IO client" if figures.get("client", "lean") == "lean" else "a python-socketio client"
    print_table(f"latency: {figures['connections']} insoles → solewatch run → {dashboard} ({what})", rows)
