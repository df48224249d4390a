"""`solewatch bench NAME`: run a benchmark, print its table, optionally save its figures as JSON."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import orjson

from shared.protocols.tracker import PROTOCOLS

BENCHMARKS = (
    "ingest",
    "connections",
    "latency",
    "alarm",
    "hostile-http",
    "handshakes",
    "webhooks",
    "export",
    "readpath",
    "disk",
    "purge",
    "fleet",
    "dashboards",
    "soak",
    "reports",
)

SECONDS = {"webhooks": 120.0, "fleet": 30.0}  # measuring windows other than the 10 s default


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print their figures (see docs/performance.md)")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measuring window (default: 120 for webhooks, 30 for fleet, 10 for the others)",
    )
    bench.add_argument("--warmup", type=float, default=3.0)
    bench.add_argument(
        "--connections",
        type=int,
        default=None,
        help="device connections (default: 1,000 for ingest, alarm and webhooks, 19,000 for connections and fleet)",
    )
    bench.add_argument("--window", type=int, default=8, help="unacknowledged frames per device (ingest)")
    bench.add_argument("--processes", type=int, default=2, help="load generator processes")
    bench.add_argument(
        "--mode",
        choices=("embedded", "distributed"),
        default="embedded",
        help="ingest: the all-in-one process, or listener processes on RabbitMQ and Redis",
    )
    bench.add_argument("--listeners", type=int, default=2, help="listener processes (ingest --mode distributed)")
    bench.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="xsole",
        help="ingest: the devices' protocol (gt06, h02, watch, teltonika: see bench/tracker_ingest.py; default xsole)",
    )
    bench.add_argument("--frames", type=int, default=300_000, help="export: positions of the large device")
    bench.add_argument(
        "--devices", type=int, default=None, help="readpath, reports: devices in the store it builds (10,000; 1,000)"
    )
    bench.add_argument(
        "--days",
        type=int,
        default=None,
        help="readpath: days of history, a position per 30 s (2: 57.6 M positions); reports: the month's days (30)",
    )
    bench.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="DIR",
        help="readpath, reports: keep the built store here, or reuse the one there (default: a temporary directory)",
    )
    bench.add_argument(
        "--device-days", type=int, default=40, help="readpath: device-days of positions read while quiet"
    )
    bench.add_argument(
        "--ingest-rate",
        type=int,
        default=None,
        help="readpath: frames/s sent during the reads under ingest (default: one per device per second, 10,000)",
    )
    bench.add_argument(
        "--slow-endpoints", type=int, default=10, help="webhooks: slow endpoints attached in its phases B"
    )
    bench.add_argument("--events", type=int, default=1000, help="webhooks: events timed for delivery throughput")
    bench.add_argument(
        "--phases",
        type=_phases,
        default=None,
        help="webhooks: the order of phases A (no endpoint) and B (default ABBABAABABBA)",
    )
    bench.add_argument(
        "--runs", type=int, default=3, help="latency, reports: runs on a fresh process each, for the spread"
    )
    bench.add_argument(
        "--client",
        choices=("lean", "socketio"),
        default="lean",
        help="latency: the dashboard, a lean Engine.IO client in its own process or python-socketio in the bench's",
    )
    bench.add_argument("--clients", type=int, default=None, help="dashboards: Socket.IO dashboards (default 100)")
    bench.add_argument(
        "--rate", type=int, default=None, help="dashboards, soak: frames/s the insoles offer (default 10,000; 5,000)"
    )
    bench.add_argument(
        "--deflate",
        action="store_true",
        help="dashboards, soak: the dashboards negotiate per-message deflate, as browsers do (costs them 10x the CPU)",
    )
    bench.add_argument("--minutes", type=float, default=30.0, help="soak: how long it runs")
    bench.add_argument("--sample-every", type=float, default=60.0, help="soak: seconds per sample (RSS, p99)")
    bench.add_argument("--json", type=Path, default=None, help="write the figures here as flat JSON")
    bench.add_argument(
        "--sweep",
        type=Path,
        default=None,
        metavar="PNG",
        help="ingest: also sweep offered load and plot throughput and latency to PNG",
    )


def _phases(order: str) -> str:
    if set(order) != {"A", "B"}:
        raise argparse.ArgumentTypeError("phases are letters A and B, at least one of each (e.g. ABBA)")
    return order


def run(args: argparse.Namespace) -> None:
    asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> None:
    if args.seconds is None:  # each bench's own measuring window unless one is given
        args.seconds = SECONDS.get(args.name, 10.0)
    if args.name == "ingest" and args.protocol != "xsole":
        from bench import tracker_ingest

        if args.mode != "embedded" or args.sweep:
            raise SystemExit("solewatch bench: ingest --protocol runs embedded only, without --sweep")
        figures = await tracker_ingest.run(
            protocol=args.protocol,
            connections=args.connections or 1000,
            seconds=args.seconds,
            warmup=args.warmup,
            window=args.window,
            processes=args.processes,
        )
        tracker_ingest.report(figures)
    elif args.name == "ingest":
        from bench import ingest

        figures = await ingest.run(
            connections=args.connections or 1000,
            seconds=args.seconds,
            warmup=args.warmup,
            window=args.window,
            processes=args.processes,
            mode=args.mode,
            listeners=args.listeners,
        )
        ingest.report(figures)
        if args.sweep:
            result = await ingest.sweep(
                connections=args.connections or 1000, window=args.window, processes=args.processes
            )
            args.sweep.parent.mkdir(parents=True, exist_ok=True)
            args.sweep.with_suffix(".json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
            ingest.plot(result, args.sweep)
            print(f"\nsweep plotted to {args.sweep}")
    elif args.name == "readpath":  # --seconds: how long the reads under ingest go on
        from bench import readpath

        figures = await readpath.run(
            devices=args.devices or 10_000,
            days=args.days or 2,
            store=args.store,
            device_days=args.device_days,
            ingest_rate=args.ingest_rate,
            seconds=args.seconds,
            warmup=args.warmup,
            processes=args.processes,
        )
        readpath.report(figures)
    elif args.name == "disk":  # `python -m bench.disk` takes --devices, --hours and --runs
        from bench import disk

        figures = await disk.run(devices=args.connections or 200)
        disk.report(figures)
    elif args.name == "alarm":
        from bench import alarm

        figures = await alarm.run(
            connections=args.connections or 1000,
            seconds=args.seconds,
            warmup=args.warmup,
            processes=args.processes,
        )
        alarm.report(figures)
    elif args.name == "webhooks":
        from bench import webhooks

        figures = await webhooks.run(
            connections=args.connections or 1000,
            seconds=args.seconds,
            processes=args.processes,
            events=args.events,
            slow_endpoints=args.slow_endpoints,
            phases=args.phases or webhooks.PHASES,
        )
        webhooks.report(figures)
    elif args.name == "latency":
        from bench import latency

        figures = await latency.run_repeated(
            runs=args.runs,
            client=args.client,
            connections=args.connections or 200,
            seconds=args.seconds,
            warmup=args.warmup,
            processes=args.processes,
        )
        latency.report(figures)
    elif args.name == "hostile-http":
        from bench import hostile_http  # `python -m bench.hostile_http --source DIR` runs another checkout
        from bench.common import ROOT

        figures = await hostile_http.run(
            source=Path(getattr(args, "source", None) or ROOT),
            runs=3,
            rss_bytes=400_000_000,
            stall_bytes=300_000_000,
        )
        hostile_http.report(figures)
    elif args.name == "export":
        from bench import export

        figures = await export.run(frames=args.frames)
        export.report(figures)
    elif args.name == "purge":
        from bench import purge

        figures = await purge.run(
            connections=args.connections or 1000,
            seconds=args.seconds,
            warmup=args.warmup,
            window=args.window,
            processes=args.processes,
        )
        purge.report(figures)
    elif args.name == "fleet":
        from bench import fleet

        figures = await fleet.run(
            connections=args.connections or 19_000,
            seconds=args.seconds,
            warmup=args.warmup,
            processes=args.processes,
        )
        fleet.report(figures)
    elif args.name == "dashboards":
        from bench import dashboards

        figures = await dashboards.run(
            clients=args.clients or 100,
            connections=args.connections or 200,
            rate=args.rate or 10_000,
            seconds=args.seconds,
            warmup=args.warmup,
            processes=args.processes,
            deflate=args.deflate,
        )
        dashboards.report(figures)
    elif args.name == "soak":
        from bench import soak

        figures = await soak.run(
            minutes=args.minutes,
            sample_every=args.sample_every,
            clients=args.clients or 10,
            connections=args.connections or 200,
            rate=args.rate or 5000,
            processes=args.processes,
            deflate=args.deflate,
        )
        soak.report(figures)
    elif args.name == "handshakes":
        from bench import handshakes  # `python -m bench.handshakes DIR` runs another checkout

        figures = await handshakes.run(handshakes=args.connections or 22_000)
        handshakes.report(figures)
    elif args.name == "reports":
        from bench import reports

        figures = await reports.run(
            devices=args.devices or 1000, days=args.days or 30, store=args.store, runs=args.runs
        )
        reports.report(figures)
    else:
        from bench import connections

        figures = await connections.run(connections=args.connections or 19_000, processes=args.processes)
        connections.report(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
