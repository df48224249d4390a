"""How long devices take to reach a live listener when theirs dies behind HAProxy.

`python -m bench.failover [--devices 100] [--runs 3] [--config FILE | --config-from-git REV]`

The real HAProxy (Debian's package) runs compose/haproxy.cfg (or an older one,
e.g. `--config-from-git HEAD`) made local as the e2e tests do
(tests/harness/haproxy.py: its addresses only), in front of two `solewatch
listener` processes on private RabbitMQ and Redis servers, each on its own
loopback address as replicas are in Docker. `--devices` insoles connect through
the proxy and log in (leastconn spreads them evenly); `--settle` seconds
later, one listener is killed with SIGKILL. The wait matters: HAProxy takes a
server it has just found for barely up (one failed check takes it down), and
only after `fall - 1` more good checks does it give it full health, as in a
deployment that has been running for a while (15 s covers the old
configuration's `inter 5s fall 3`). Each insole that loses its connection reconnects at once
and, while it does not get a LOGIN_ACK, tries again every `--retry-delay`
seconds. The figure is the time from the kill until the last of them was
accepted (LOGIN_ACK status 0) by the live listener; the table gives its
minimum, median and maximum over `--runs` runs, with the failed attempts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import print_table, register_devices
from bench.haproxy import HAPROXY_CFG, ROOT, LocalProxy, Replica, start_proxy
from bench.servers import rabbitmq_process, redis_process, started
from bench.xsole_client import XSoleTestClient
from shared.protocols.xsole import LoginAck

REPLICA_ADDRESSES = ("127.0.0.2", "127.0.0.3")
LOGIN_TIMEOUT_S = 5.0
# How long to wait for every insole to be back before giving up on a run.
RUN_LIMIT_S = 90.0


@dataclass
class Insole:
    imei: str
    token: bytes
    lost_at: float | None = None  # when its connection was closed under it
    accepted_at: float | None = None  # its next LOGIN_ACK status 0
    failed_attempts: int = 0
    client: XSoleTestClient | None = field(default=None, repr=False)


async def login(port: int, insole: Insole) -> XSoleTestClient | None:
    """A connection through the proxy with a successful LOGIN, or None (refused, closed, no answer)."""
    try:
        client = await asyncio.wait_for(XSoleTestClient.connect("127.0.0.1", port), LOGIN_TIMEOUT_S)
    except (OSError, TimeoutError):
        return None
    try:
        ack = await asyncio.wait_for(client.login(insole.imei, insole.token), LOGIN_TIMEOUT_S)
        if isinstance(ack, LoginAck) and ack.status == 0:
            return client
    except (EOFError, OSError, TimeoutError, AssertionError):
        pass
    await client.close()
    return None


async def live(port: int, insole: Insole, retry_delay: float) -> None:
    """Hold the connection; when it is lost, reconnect until accepted again."""
    assert insole.client is not None
    await insole.client.closed_by_server(timeout=RUN_LIMIT_S * 2)
    insole.lost_at = time.monotonic()
    await insole.client.close()
    while (client := await login(port, insole)) is None:
        insole.failed_attempts += 1
        await asyncio.sleep(retry_delay)
    insole.accepted_at = time.monotonic()
    insole.client = client


async def connect_spread(proxy: LocalProxy, replicas: list[Replica], insoles: list[Insole]) -> None:
    """Every insole logged in through the proxy, spread over both replicas (retried until HAProxy has
    found and checked them both: until then it knows one, or none)."""
    deadline = time.monotonic() + 60
    while True:
        for insole in insoles:
            insole.client = await login(proxy.device_port, insole)
        held = [replica.metric("listener_connections_open") for replica in replicas]
        if all(insole.client for insole in insoles) and min(held) > 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"devices not spread over both listeners: {held}")
        for insole in insoles:
            if insole.client is not None:
                await insole.client.close()
        await asyncio.sleep(0.5)


async def one_run(
    work: Path,
    config: str,
    credentials: list[tuple[str, str]],
    env: dict[str, str],
    *,
    retry_delay: float,
    settle: float,
) -> dict[str, float]:
    proxy = start_proxy(work, {"listener": list(REPLICA_ADDRESSES)}, source=config)
    replicas = [
        Replica(
            "listener",
            address,
            http_port=proxy.service_http_port,
            device_port=proxy.service_device_port,
            data_dir=work.parent / "data",
            log_path=work / f"listener-{address}.log",
            env=env,
        )
        for address in REPLICA_ADDRESSES
    ]
    insoles = [Insole(imei, bytes.fromhex(token)) for imei, token in credentials]
    tasks: list[asyncio.Task[None]] = []
    try:
        for replica in replicas:
            await asyncio.to_thread(replica.start, 40.0)
        await connect_spread(proxy, replicas, insoles)
        tasks = [asyncio.create_task(live(proxy.device_port, insole, retry_delay)) for insole in insoles]
        await asyncio.sleep(settle)
        killed_at = time.monotonic()
        await asyncio.to_thread(replicas[0].kill)
        deadline = killed_at + RUN_LIMIT_S
        while time.monotonic() < deadline:
            moved = [i for i in insoles if i.lost_at is not None]
            if moved and all(i.accepted_at is not None for i in moved) and time.monotonic() - killed_at > 2:
                break
            await asyncio.sleep(0.05)
        moved = [i for i in insoles if i.lost_at is not None]
        back = [i.accepted_at - killed_at for i in moved if i.accepted_at is not None]
        if len(back) < len(moved):
            raise RuntimeError(f"{len(moved) - len(back)} of {len(moved)} devices not back after {RUN_LIMIT_S} s")
        return {
            "moved": len(moved),
            "last_back_s": max(back),
            "median_back_s": statistics.median(back),
            "failed_attempts": sum(i.failed_attempts for i in moved),
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for insole in insoles:
            if insole.client is not None:
                await insole.client.close()
        for replica in replicas:
            await asyncio.to_thread(replica.stop)
        await asyncio.to_thread(proxy.stop)


async def run(*, devices: int, runs: int, config: str, retry_delay: float, settle: float) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="solewatch-failover-") as tmp:
        base = Path(tmp)
        for name in ("data", "rabbitmq", "redis"):
            (base / name).mkdir()
        credentials = await register_devices(base / "data", devices)
        amqp = await asyncio.to_thread(started, rabbitmq_process, base / "rabbitmq")
        redis = await asyncio.to_thread(started, redis_process, base / "redis")
        env = {
            "SOLEWATCH_AMQP_URL": amqp.url,
            "SOLEWATCH_REDIS_URL": redis.url,
            "SOLEWATCH_LOG_LEVEL": "warning",
            "SOLEWATCH_MAX_CONNECTIONS": str(devices + 100),
        }
        results = []
        try:
            for index in range(runs):
                work = base / f"run{index}"
                work.mkdir()
                results.append(await one_run(work, config, credentials, env, retry_delay=retry_delay, settle=settle))
                print(f"run {index + 1}: {results[-1]}", flush=True)
        finally:
            await asyncio.to_thread(redis.stop_all)
            await asyncio.to_thread(amqp.stop_all)
        return results


def report(label: str, results: list[dict[str, float]]) -> None:
    def spread(key: str) -> str:
        values = sorted(r[key] for r in results)
        return f"{values[0]:.2f} / {statistics.median(values):.2f} / {values[-1]:.2f}"

    print_table(
        f"failover, {label} ({len(results)} runs; min / median / max)",
        [
            ("devices moved per run", spread("moved").replace(".00", "")),
            ("last device back (s after the kill)", spread("last_back_s")),
            ("median device back (s)", spread("median_back_s")),
            ("failed reconnect attempts per run", spread("failed_attempts").replace(".00", "")),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--retry-delay", type=float, default=0.5, help="seconds between a device's failed attempts")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds between the devices' login and the kill")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, default=HAPROXY_CFG, help="HAProxy configuration (compose's)")
    source.add_argument("--config-from-git", metavar="REV", help="compose/haproxy.cfg as of this git revision")
    args = parser.parse_args()
    if not (ROOT / "compose").is_dir():  # an installed package: the wheel carries no compose/
        parser.error("this bench runs compose/haproxy.cfg with compose.yml's mounts: run it in a solewatch checkout")
    if args.config_from_git:
        config = subprocess.run(
            ["git", "show", f"{args.config_from_git}:compose/haproxy.cfg"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        label = f"compose/haproxy.cfg at {args.config_from_git}"
    else:
        config, label = args.config.read_text(), str(args.config)
    results = asyncio.run(
        run(devices=args.devices, runs=args.runs, config=config, retry_delay=args.retry_delay, settle=args.settle)
    )
    report(label, results)


if __name__ == "__main__":
    main()
