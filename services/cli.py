"""The `solewatch` command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import orjson

from shared.config import Settings, SettingsError, load_settings
from shared.logging import configure_logging, get_logger
from shared.runtime import run_process
from shared.store import DeviceExists

log = get_logger("solewatch")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="solewatch", description="Lone-worker safety telemetry.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="every service in one process on the embedded defaults")
    run.add_argument("--simulate", type=int, default=0, metavar="N", help="also stream N simulated insoles")
    run.add_argument("--rate", type=float, default=0.2, help="positions per second per simulated insole")

    # The distributed mode: one service per process (services/distributed.py).
    for service, description in (
        ("listener", "XSole TCP (and MQTT) ingestion and the storage writer"),
        ("api", "the REST API"),
        ("authn", "sign-in, tokens and API keys"),
        ("wss", "Socket.IO live updates"),
        ("notifications", "alerts from alarms, SMS and email"),
    ):
        sub.add_parser(service, help=f"distributed mode: {description}, on RabbitMQ, Redis and MongoDB")
    sub.add_parser("openapi", help="print the HTTP API's OpenAPI spec (JSON) and exit")
    sub.add_parser("migrate", help="create the store's collections, tables and indexes, and the first admin; then exit")

    sim = sub.add_parser("simulate", help="simulated insoles speaking XSole v1 to a listener")
    sim.add_argument("--devices", type=int, default=20)
    sim.add_argument("--rate", type=float, default=0.2, help="positions per second per insole")
    sim.add_argument("--host", default=None, help="listener host (default: SOLEWATCH_BIND)")
    sim.add_argument("--port", type=int, default=None, help="listener port (default: SOLEWATCH_LISTENER_PORT)")
    sim.add_argument("--duration", type=float, default=None, help="seconds to run (default: until stopped)")
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument("--device", action="append", default=[], metavar="IMEI:TOKEN",
                     help="simulate this registered device (repeatable) instead of registering simulated ones")
    sim.add_argument("--sos-per-minute", type=float, default=None,
                     help="chance of an SOS per insole per minute (default: about one an hour)")

    devices = sub.add_parser("devices", help="manage devices in the store")
    devices_sub = devices.add_subparsers(dest="action", required=True)
    add = devices_sub.add_parser("add", help="register a device; prints JSON with its secret token")
    add.add_argument("imei")
    add.add_argument("--name", required=True)
    add.add_argument("--tenant", default="default")
    command = devices_sub.add_parser("command", help="queue a downlink command for a device")
    command.add_argument("imei")
    command.add_argument("cmd", choices=["locate-now", "set-interval", "vibrate", "alarm-acknowledged", "reboot"])
    command.add_argument("--args", default="", help="argument bytes as hex")
    tenants = sub.add_parser("tenants", help="manage tenants")
    tenants_sub = tenants.add_subparsers(dest="action", required=True)
    tenant_add = tenants_sub.add_parser("add", help="create a tenant and its first admin; prints JSON")
    tenant_add.add_argument("name")
    tenant_add.add_argument("--admin-email", required=True)
    tenant_add.add_argument("--admin-password", required=True)

    from bench.cli import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except (SettingsError, ValueError) as exc:
        sys.exit(f"solewatch: invalid settings: {exc}")
    configure_logging(settings.log_level)
    if args.command == "openapi":
        from services.api.spec import openapi_spec

        sys.stdout.write(orjson.dumps(openapi_spec(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n")
        return
    if args.command == "bench":
        from bench.cli import run as run_bench

        run_bench(args)  # its own event loop; servers under test are separate processes
        return
    handler = {"run": _run, "simulate": _simulate, "devices": _devices, "tenants": _tenants,
               "migrate": _migrate}.get(args.command, _service)
    try:
        run_process(lambda: handler(settings, args))
    except KeyboardInterrupt:
        pass


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    from services.components import embedded_runtime

    runtime, _ = embedded_runtime(
        settings, load_settings, simulate=getattr(args, "simulate", 0), rate=getattr(args, "rate", 0.2),
    )
    await runtime.run()


async def _service(settings: Settings, args: argparse.Namespace) -> None:
    from services.distributed import service_runtime

    try:
        runtime = service_runtime(args.command, settings, load_settings)
    except SettingsError as exc:
        sys.exit(f"solewatch: {exc}")
    await runtime.run()


async def _migrate(settings: Settings, args: argparse.Namespace) -> None:
    from services.components import AccountsBootstrap, build_store

    store = build_store(settings)
    await store.open()  # every adapter creates what is missing when opened
    try:
        await AccountsBootstrap(settings, store).start()
    finally:
        await store.close()
    log.info("migrated", store=type(store).__name__)


async def _simulate(settings: Settings, args: argparse.Namespace) -> None:
    from services.components import build_store, register_simulated_insoles
    from services.simulator import SimulatedInsole, run_simulation

    if args.device:
        try:
            insoles = [SimulatedInsole(imei=d.split(":")[0], token=bytes.fromhex(d.split(":")[1])) for d in args.device]
        except (IndexError, ValueError) as exc:
            sys.exit(f"solewatch: --device takes IMEI:TOKEN (the 32 hex characters from registration): {exc}")
    else:
        store = build_store(settings)
        await store.open()
        try:
            insoles = await register_simulated_insoles(store, args.devices)
        finally:
            await store.close()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stats = await run_simulation(
        args.host or settings.bind, args.port or settings.listener_port, insoles,
        rate=args.rate, duration=args.duration, seed=args.seed, stop=stop,
        **({"sos_probability": args.sos_per_minute} if args.sos_per_minute is not None else {}),
    )
    log.info("simulation_finished", **{k: v for k, v in vars(stats).items() if isinstance(v, (int, float))})


async def _devices(settings: Settings, args: argparse.Namespace) -> None:
    from services.components import build_store, register_device
    from shared.protocols.xsole import CommandCode

    store = build_store(settings)
    await store.open()
    try:
        if args.action == "add":
            try:
                device, _ = await register_device(store, imei=args.imei, name=args.name, tenant=args.tenant)
            except ValueError as exc:
                sys.exit(f"solewatch: {exc}")
            except DeviceExists:
                sys.exit(f"solewatch: device {args.imei} is already registered")
            sys.stdout.write(orjson.dumps(device).decode() + "\n")
        elif args.action == "command":
            found = await store.device_by_imei(args.imei)
            if found is None:
                sys.exit(f"solewatch: no device {args.imei}")
            code = CommandCode[args.cmd.upper().replace("-", "_")]
            command_id = await store.enqueue_command(device_id=found.id, cmd=code, args=bytes.fromhex(args.args))
            sys.stdout.write(orjson.dumps({"command_id": command_id, "imei": args.imei, "cmd": args.cmd}).decode() + "\n")
    finally:
        await store.close()


async def _tenants(settings: Settings, args: argparse.Namespace) -> None:
    from services.authn.bootstrap import InvalidAccount, add_tenant
    from services.components import build_store
    from shared.store.accounts import TenantExists, UserExists

    store = build_store(settings)
    await store.open()
    try:
        created = await add_tenant(store, name=args.name, admin_email=args.admin_email,
                                   admin_password=args.admin_password)
    except (InvalidAccount, TenantExists, UserExists) as exc:
        sys.exit(f"solewatch: {type(exc).__name__}: {exc}")
    finally:
        await store.close()
    sys.stdout.write(orjson.dumps(created).decode() + "\n")


if __name__ == "__main__":
    main()
