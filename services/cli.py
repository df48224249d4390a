"""The `solewatch` command."""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import orjson

from services.simulator.runner import FLEET_SOS_PER_MINUTE
from shared.config import Settings, SettingsError, load_settings
from shared.logging import configure_logging, get_logger
from shared.protocols.tracker import PROTOCOLS
from shared.runtime import Runtime, run_process
from shared.store import DeviceExists
from shared.store.devices import MODEL_MAX_LENGTH

log = get_logger("solewatch")


def _sos_per_minute(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a number of SOS per minute (0 or more)")
    return value


SOS_HELP = (
    f"SOS raised per minute by the simulated insoles together (default: {FLEET_SOS_PER_MINUTE:g}, "
    f"the first within {1.5 * 60 / FLEET_SOS_PER_MINUTE:g} s; 0: none)"
)


def _protocol_list(text: str) -> tuple[str, ...]:
    names = PROTOCOLS if text.strip() == "all" else tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"protocols are some of {','.join(PROTOCOLS)} (or 'all'), got {text!r}")
    return tuple(dict.fromkeys(names))  # each once, in the order given


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="solewatch", description="Lone-worker safety telemetry.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="every service in one process on the embedded defaults")
    run.add_argument("--simulate", type=int, default=0, metavar="N", help="also stream N simulated insoles")
    run.add_argument("--rate", type=float, default=0.2, help="positions per second per simulated insole")
    run.add_argument("--sos-per-minute", type=_sos_per_minute, default=FLEET_SOS_PER_MINUTE, help=SOS_HELP)
    run.add_argument(
        "--simulate-protocols",
        type=_protocol_list,
        default=("xsole",),
        metavar="P1,P2",
        help=f"split the N simulated devices over these protocols, each to its own port ({','.join(PROTOCOLS)},"
        " or 'all'; default: xsole)",
    )

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

    sim = sub.add_parser("simulate", help="simulated insoles (or trackers) speaking their protocol to a listener")
    sim.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="xsole",
        help="what the simulated devices speak (default: xsole, the insoles)",
    )
    sim.add_argument("--devices", type=int, default=20)
    sim.add_argument("--rate", type=float, default=0.2, help="positions per second per device")
    sim.add_argument("--host", default=None, help="listener host (default: SOLEWATCH_BIND)")
    sim.add_argument(
        "--port",
        type=int,
        default=None,
        help="listener port (default: SOLEWATCH_LISTENER_PORT, or the protocol's, e.g. SOLEWATCH_GT06_PORT)",
    )
    sim.add_argument("--duration", type=float, default=None, help="seconds to run (default: until stopped)")
    sim.add_argument("--seed", type=int, default=None)
    sim.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="IMEI:TOKEN",
        help="simulate this registered device (repeatable) instead of registering simulated ones"
        " (a tracker's: IMEI alone)",
    )
    sim.add_argument("--sos-per-minute", type=_sos_per_minute, default=FLEET_SOS_PER_MINUTE, help=SOS_HELP)

    devices = sub.add_parser("devices", help="manage devices in the store")
    devices_sub = devices.add_subparsers(dest="action", required=True)
    add = devices_sub.add_parser(
        "add", help="register a device; prints JSON with its secret token (an XSole insole's; trackers have none)"
    )
    add.add_argument("imei", help="15 digits (xsole, gt06, teltonika) or 10 to 15 digits (h02, watch)")
    add.add_argument("--name", required=True)
    add.add_argument("--tenant", default="default")
    add.add_argument(
        "--protocol", default="xsole", choices=PROTOCOLS, help="the protocol the device speaks (CONTRACT §10)"
    )
    add.add_argument("--model", default=None, help="what the device is, free text (e.g. 'Concox GT06N')")
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

    _add_backup_parsers(sub)
    sub.add_parser("purge", help="delete now what is past each tenant's retention; prints the counts as JSON")
    digest = sub.add_parser(
        "digest", help="send this week's digest email to the admins who asked for it; prints who got it as JSON"
    )
    digest.add_argument("--now", action="store_true", required=True, help="at once, covering the seven days before now")

    from bench.cli import add_parser as add_bench_parser

    add_bench_parser(sub)
    return parser


def _add_backup_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = sub.add_parser(
        "backup",
        help="copy the embedded store into the file PATH while solewatch runs or not; prints JSON",
    )
    backup.add_argument("path", metavar="PATH", type=Path, help="the backup file to write (one SQLite file)")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    restore = sub.add_parser(
        "restore", help="put the backup file PATH in place of the embedded store (solewatch stopped); prints JSON"
    )
    restore.add_argument("path", metavar="PATH", type=Path, help="a file written by `solewatch backup`")
    restore.add_argument(
        "--discard-current",
        action="store_true",
        help="delete the store being replaced instead of keeping it in the data directory's replaced-<time>/",
    )


def _backup_or_restore(settings: Settings, args: argparse.Namespace) -> None:
    """Plain blocking work, no event loop: SQLite's backup runs in this thread."""
    import sqlite3

    from services.backup import BackupRefused, backup, restore

    try:
        if args.command == "backup":
            done = backup(settings, args.path, force=args.force)
        else:
            done = restore(settings, args.path, discard_current=args.discard_current)
    except BackupRefused as exc:
        sys.exit(f"solewatch {args.command}: {exc}")
    except OSError as exc:
        sys.exit(f"solewatch {args.command}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except sqlite3.Error as exc:  # the store itself: busy beyond the wait, damaged, unreadable
        sys.exit(f"solewatch {args.command}: the store {settings.sqlite_path.resolve()} could not be used: {exc}")
    except KeyboardInterrupt:  # a half-written copy is removed by the code it interrupted
        outcome = "no backup was written" if args.command == "backup" else "run it again to finish the restore"
        sys.exit(f"solewatch {args.command}: interrupted; {outcome}")
    sys.stdout.write(orjson.dumps(done).decode() + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except (SettingsError, ValueError) as exc:
        sys.exit(f"solewatch: invalid settings: {exc}")
    configure_logging(settings.log_level)
    if args.command == "openapi":
        from services.api.spec import openapi_spec

        sys.stdout.write(
            orjson.dumps(openapi_spec(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
        )
        return
    if args.command == "bench":
        from bench.cli import run as run_bench

        run_bench(args)  # its own event loop; servers under test are separate processes
        return
    if args.command in ("backup", "restore"):
        _backup_or_restore(settings, args)
        return
    handler = {
        "run": _run,
        "simulate": _simulate,
        "devices": _devices,
        "tenants": _tenants,
        "migrate": _migrate,
        "purge": _purge,
        "digest": _digest,
    }.get(args.command, _service)
    try:
        run_process(lambda: handler(settings, args))
    except KeyboardInterrupt:
        pass


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    from services.components import embedded_runtime

    runtime, _ = embedded_runtime(
        settings,
        load_settings,
        simulate=args.simulate,
        rate=args.rate,
        sos_per_minute=args.sos_per_minute,
        simulate_protocols=args.simulate_protocols,
    )
    await _run_or_explain(runtime, settings)


async def _service(settings: Settings, args: argparse.Namespace) -> None:
    from services.distributed import service_runtime

    try:
        runtime = service_runtime(args.command, settings, load_settings)
    except SettingsError as exc:
        sys.exit(f"solewatch: {exc}")
    await _run_or_explain(runtime, settings)


async def _run_or_explain(runtime: Runtime, settings: Settings) -> None:
    """Run until stopped; a failure to start is one sentence on stderr and exit status 1.

    The traceback is for developers: printed only at SOLEWATCH_LOG_LEVEL=debug.
    Runtime.run has already closed whatever had started when the error comes here.
    """
    from services.startup import startup_failure

    try:
        await runtime.run()
    except Exception as exc:
        if settings.log_level == "debug":
            traceback.print_exception(exc)
        sys.exit(f"solewatch: {startup_failure(exc, settings)}")


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
    from services.components import build_store, register_simulated_insoles, register_simulated_trackers
    from services.simulator import SimulatedInsole, run_simulation
    from services.simulator.tracker import run_tracker_simulation
    from shared.protocols.registry import imei_problem

    protocol = args.protocol
    port = args.port or (settings.listener_port if protocol == "xsole" else getattr(settings, f"{protocol}_port"))
    if not port:  # before registering anything
        sys.exit(f"solewatch: the {protocol} port is off (SOLEWATCH_{protocol.upper()}_PORT=0); give --port")
    insoles: list[SimulatedInsole] = []
    imeis: list[str] = []
    if args.device and protocol != "xsole":
        imeis = [d.split(":")[0] for d in args.device]
        problems = [p for p in (imei_problem(protocol, imei) for imei in imeis) if p is not None]
        if problems:
            sys.exit(f"solewatch: --device takes the IMEI of a registered {protocol} device: {problems[0]}")
    elif args.device:
        try:
            insoles = [SimulatedInsole(imei=d.split(":")[0], token=bytes.fromhex(d.split(":")[1])) for d in args.device]
        except (IndexError, ValueError) as exc:
            sys.exit(f"solewatch: --device takes IMEI:TOKEN (the 32 hex characters from registration): {exc}")
    else:
        store = build_store(settings)
        await store.open()
        try:
            if protocol == "xsole":
                insoles = await register_simulated_insoles(store, args.devices)
            else:
                imeis = await register_simulated_trackers(store, protocol, args.devices)
        finally:
            await store.close()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = args.host or settings.bind
    if protocol == "xsole":
        stats = await run_simulation(
            host,
            port,
            insoles,
            rate=args.rate,
            duration=args.duration,
            seed=args.seed,
            stop=stop,
            sos_per_minute=args.sos_per_minute,
            give_up_unreachable=True,
        )
    else:
        stats = await run_tracker_simulation(
            protocol,
            host,
            port,
            imeis,
            rate=args.rate,
            duration=args.duration,
            seed=args.seed,
            stop=stop,
            sos_per_minute=args.sos_per_minute,
            give_up_unreachable=True,
        )
    # The simulation has logged the final counts (simulator.finished); a run that sent nothing fails.
    if stats.connections_made == 0:
        sys.exit(
            f"solewatch: could not connect to a listener at {host}:{port} ({await _connect_error(host, port)}), "
            "so nothing was sent; start `solewatch run` first, or give --host and --port"
        )
    if stats.logins == 0:
        check = (
            "the --device IMEI:TOKEN pairs" if protocol == "xsole" else f"that the devices are registered as {protocol}"
        )
        sys.exit(
            f"solewatch: the listener at {host}:{port} accepted no login ({stats.logins_refused} refused), "
            f"so nothing was sent; check {check}, or that it uses this data directory"
        )


async def _connect_error(host: str, port: int) -> str:
    """Why a connection to host:port fails, in the system's words (asked once more, for the message)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except TimeoutError:
        return "no answer within 5 s"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    writer.close()
    return "it accepts connections only now"


async def _devices(settings: Settings, args: argparse.Namespace) -> None:
    from services.components import build_store, register_device
    from shared.protocols.xsole.command_args import command_args_problem, command_code
    from shared.store.audit import Actor, AuditEntry

    store = build_store(settings)
    await store.open()
    try:
        if args.action == "add":
            try:
                if args.model is not None and not 1 <= len(args.model) <= MODEL_MAX_LENGTH:
                    raise ValueError(f"--model is 1 to {MODEL_MAX_LENGTH} characters")
                device, _ = await register_device(
                    store,
                    imei=args.imei,
                    name=args.name,
                    tenant=args.tenant,
                    actor=Actor.system("cli"),
                    protocol=args.protocol,
                    model=args.model,
                )
            except ValueError as exc:
                sys.exit(f"solewatch: {exc}")
            except DeviceExists:
                sys.exit(f"solewatch: device {args.imei} is already registered")
            sys.stdout.write(orjson.dumps(device).decode() + "\n")
        elif args.action == "command":
            found = await store.device_by_imei(args.imei)
            if found is None:
                sys.exit(f"solewatch: no device {args.imei}")
            code = command_code(args.cmd)
            try:
                command_args = bytes.fromhex(args.args)
            except ValueError:
                sys.exit("solewatch: --args takes hex, such as 003c")
            problem = command_args_problem(code, command_args)
            if problem is not None:
                sys.exit(f"solewatch: {problem}")
            audit = AuditEntry(
                found.tenant_id,
                Actor.system("cli"),
                "device.command",
                "device",
                found.imei,
                {"command": args.cmd, "args": command_args.hex()},
            )
            command_id = await store.enqueue_command(
                device_id=found.id, cmd=code, args=command_args, ttl_s=settings.command_ttl, audit=audit
            )
            sys.stdout.write(
                orjson.dumps({"command_id": command_id, "imei": args.imei, "cmd": args.cmd}).decode() + "\n"
            )
    finally:
        await store.close()


async def _tenants(settings: Settings, args: argparse.Namespace) -> None:
    from services.authn.bootstrap import InvalidAccount, add_tenant
    from services.components import build_store
    from shared.store.accounts import TenantExists, UserExists

    store = build_store(settings)
    await store.open()
    try:
        created = await add_tenant(
            store, name=args.name, admin_email=args.admin_email, admin_password=args.admin_password
        )
    except (InvalidAccount, TenantExists, UserExists) as exc:
        sys.exit(f"solewatch: {type(exc).__name__}: {exc}")
    finally:
        await store.close()
    sys.stdout.write(orjson.dumps(created).decode() + "\n")


async def _purge(settings: Settings, args: argparse.Namespace) -> None:
    """`solewatch purge`: one retention purge now, in whichever mode the settings name."""
    from services.components import build_store
    from services.notifications.purge import purge_expired
    from shared.store.audit import Actor

    store = build_store(settings)
    await store.open()
    try:
        report = await purge_expired(store, chunk=settings.retention_purge_chunk, actor=Actor.system("cli"))
    finally:
        await store.close()
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


async def _digest(settings: Settings, args: argparse.Namespace) -> None:
    """`solewatch digest --now`: this week's digest of every tenant at once, unless it went out already."""
    from services.components import build_store
    from services.notifications.digest import send_digests_now
    from services.notifications.email import EmailNotifier

    if not settings.smtp_host:
        sys.exit("solewatch: the digest is sent by email: set SOLEWATCH_SMTP_HOST")
    store = build_store(settings)
    await store.open()
    try:
        sent = await send_digests_now(store, EmailNotifier(settings))
    finally:
        await store.close()
    sys.stdout.write(orjson.dumps({"sent": sent}).decode() + "\n")


if __name__ == "__main__":
    main()
