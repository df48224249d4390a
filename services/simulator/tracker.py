"""Simulated trackers (GT06, H02, 3G watches, Teltonika) walking the insoles' routes over TCP.

Each device is one task: it records what its walk yields (services/simulator/walk.py: positions,
heartbeats, now and then an SOS), hands it to its firmware (services/simulator/firmware.py: the
protocol's packets, the window of unanswered ones, the resending) and keeps a connection to the
listener's port for that protocol: logging in as the protocol does, dropping a connection whose
oldest packet went unanswered too long, reconnecting with a growing back-off, and sending again
what the server never answered.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import structlog

from services.simulator.device import SimulationStats
from services.simulator.firmware import Packet, TrackerFirmware, is_sos
from services.simulator.runner import FLEET_SOS_PER_MINUTE, run_fleet
from services.simulator.walk import InsoleTelemetry, luhn_check_digit
from shared.protocols import registry
from shared.protocols.tracker import TrackerDevice
from shared.protocols.xsole.constants import CommandCode

log = structlog.get_logger("solewatch.simulator")

# Reserved identifiers, apart from the insoles' TAC 35999900 (15 digits): GT06 and Teltonika
# devices carry 15-digit IMEIs, H02 and watch devices here the 10-digit serials many of them carry.
_IMEI_TAC = {"gt06": "35999901", "teltonika": "35999902"}
_SERIAL_PREFIX = {"h02": "7999", "watch": "8999"}
MAX_SIMULATED = 1_000_000


def simulated_tracker_imeis(protocol: str, count: int, first: int = 0) -> list[str]:
    """`count` identifiers for simulated devices of `protocol`, always the same, never an insole's."""
    if count < 0 or first < 0 or first + count > MAX_SIMULATED:
        raise ValueError("simulated device serials run from 0 to 999999")
    if protocol in _IMEI_TAC:
        bodies = [f"{_IMEI_TAC[protocol]}{serial:06d}" for serial in range(first, first + count)]
        return [body + str(luhn_check_digit(body)) for body in bodies]
    if protocol in _SERIAL_PREFIX:
        return [f"{_SERIAL_PREFIX[protocol]}{serial:06d}" for serial in range(first, first + count)]
    raise ValueError(f"no simulated devices for protocol {protocol!r}")


@dataclass(frozen=True, slots=True)
class TrackerBehaviour:
    """Timings shared by the simulated trackers of a run."""

    window: int = 4  # packets sent and not yet answered
    answer_timeout: float = 20.0  # the oldest unanswered packet waits this long, then the connection is dropped
    heartbeat_interval: float = 60.0
    connect_timeout: float = 10.0
    login_timeout: float = 10.0
    reconnect_backoff: tuple[float, float] = (1.0, 60.0)  # first and longest delay
    refused_backoff: tuple[float, float] = (30.0, 900.0)
    startup_spread: float = 5.0
    drain_timeout: float = 2.0  # at the end, wait this long for the answers still due


class _Link(asyncio.Protocol):
    def __init__(self, device: SimulatedTracker) -> None:
        self.device = device
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's

    def data_received(self, data: bytes) -> None:
        if self.device.link is self:
            self.device.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.device.on_connection_lost(self)

    def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SimulatedTracker:
    """One tracker of `protocol` on the wire."""

    def __init__(
        self,
        device: TrackerDevice,
        host: str,
        port: int,
        *,
        rate: float,
        rng: random.Random,
        stats: SimulationStats,
        stop: asyncio.Event,
        deadline: float | None = None,
        behaviour: TrackerBehaviour | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.imei = device.imei
        self.protocol = device.protocol
        self.host, self.port = host, port
        self.stats = stats
        self.behaviour = b = behaviour or TrackerBehaviour()
        self.firmware = TrackerFirmware(device, window=b.window)
        self._rng = rng
        self._stop = stop
        self._deadline = deadline
        self._clock = clock
        self.telemetry = InsoleTelemetry(
            rng,
            clock(),
            next_seq=lambda: 0,  # trackers number nothing the simulator needs
            position_interval=1.0 / rate,
            activity_interval=3600.0,  # recorded by the walk, carried by no tracker protocol
            heartbeat_interval=b.heartbeat_interval,
            sos_per_minute=0.0,  # the fleet's schedule raises them
        )
        self.link: _Link | None = None
        self._ever_online = False
        self._backoff = self._refused_backoff = 0.0
        self._reconnect_at = 0.0
        self._hello: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def online(self) -> bool:
        return self.link is not None and self.firmware.online

    def _battery(self) -> int:
        return min(100, max(0, round(self.telemetry.battery)))

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        await self._sleep(self._rng.uniform(0, min(self.behaviour.startup_spread, self.telemetry.position_interval)))
        try:
            while not self._stopping():
                now = self._clock()
                if self.link is None and now >= self._reconnect_at:
                    await self._connect()
                    continue
                self._record(now)
                if self.online:
                    oldest = self.firmware.oldest_unanswered()
                    if oldest is not None and now - oldest >= self.behaviour.answer_timeout:
                        log.warning("simulator.no_answer", imei=self.imei, protocol=self.protocol)
                        self.stats.connections_lost += 1
                        self._hang_up()
                        self._schedule_reconnect(now)
                        continue
                    self._send(now)
                await self._sleep(self._next_wake() - now)
            await self._drain()
        finally:
            self._hang_up()
            fw = self.firmware
            self.stats.frames_unsent += len(fw.urgent) + len(fw.queue)

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._stop.is_set() and self._hello is not None and not self._hello.done():
            self._hello.set_result(None)

    def raise_sos(self) -> None:
        """The worker presses SOS now: sent at once when online, else after the next login."""
        self.firmware.record(self.telemetry.sos_now(self._clock()), self._battery())
        if self.online:
            self._send(self._clock())

    def _stopping(self) -> bool:
        return self._stop.is_set() or (self._deadline is not None and self._clock() >= self._deadline)

    def _next_wake(self) -> float:
        wake = self.telemetry.next_due
        oldest = self.firmware.oldest_unanswered()
        if self.online and oldest is not None:
            wake = min(wake, oldest + self.behaviour.answer_timeout)
        if self.link is None:
            wake = min(wake, self._reconnect_at)
        if self._deadline is not None:
            wake = min(wake, self._deadline)
        return wake

    async def _sleep(self, delay: float) -> None:
        if delay <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        handle = loop.call_later(delay, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    async def _drain(self) -> None:
        until = self._clock() + self.behaviour.drain_timeout
        while self.online and self.firmware.in_flight and self._clock() < until:
            await self._sleep(min(0.1, until - self._clock()))

    # -- sending and receiving --------------------------------------------------------------

    def _record(self, now: float) -> None:
        events = self.telemetry.advance(now, buffered=not self.online)
        self.firmware.record(events, self._battery())

    def _send(self, now: float) -> None:
        data = self.firmware.outgoing(now)
        if data and self.link is not None:
            self.link.write(data)
            self.stats.bytes_sent += len(data)
        self._count_settled()

    def _count_settled(self) -> None:
        fw, stats = self.firmware, self.stats
        stats.retransmissions, fw.resent = stats.retransmissions + fw.resent, 0
        for packet in fw.acked:
            self._count(packet)
        fw.acked.clear()
        commands, fw.commands = fw.commands, []
        for command in commands:
            stats.commands_received += 1
            log.info("simulator.command", imei=self.imei, protocol=self.protocol, cmd=command.command)
            if command.command == CommandCode.LOCATE_NOW and self.protocol != "h02":
                # A fresh position too, as these devices send after a locate (H02's answer is one already).
                fw.record(self.telemetry.locate_now(self._clock()), self._battery())
                if self.online:
                    self._send(self._clock())

    def _count(self, packet: Packet) -> None:
        """The run's counters, in the insoles' names: a tracker's packet counts as a frame once settled."""
        stats = self.stats
        if packet.kind == "answer":
            return
        stats.frames_sent += 1  # settled: answered, or sent for protocols that answer nothing
        stats.acks_stored += packet.answered
        if packet.kind == "position":
            stats.positions_sent += 1
        elif packet.kind == "alarm":
            stats.alarms_sent += 1
            if is_sos(packet):
                stats.sos_sent += 1
                log.info("simulator.sos", imei=self.imei, protocol=self.protocol)

    def on_data(self, data: bytes) -> None:
        fw = self.firmware
        was_pending = fw.hello_pending
        reply = fw.received(data, self._clock())
        if self.link is not None:
            self.link.write(reply)
            self.stats.bytes_sent += len(reply)
        self._count_settled()
        if was_pending and not fw.hello_pending and self._hello is not None and not self._hello.done():
            self._hello.set_result(None)

    def on_connection_lost(self, link: _Link) -> None:
        if link is not self.link:
            return
        self.stats.connections_lost += 1
        log.info("simulator.connection_lost", imei=self.imei, protocol=self.protocol)
        self._detach()
        self._schedule_reconnect(self._clock())
        if self._hello is not None and not self._hello.done():
            self._hello.set_result(None)
        self.wake()

    # -- connection life ---------------------------------------------------------------

    async def _connect(self) -> None:
        b, stats = self.behaviour, self.stats
        loop = asyncio.get_running_loop()
        try:
            _, link = await asyncio.wait_for(
                loop.create_connection(lambda: _Link(self), self.host, self.port), b.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            stats.connect_failures += 1
            delay = self._schedule_reconnect(self._clock())
            log.info("simulator.connect_failed", imei=self.imei, error=repr(exc), retry_in=round(delay, 1))
            return
        self.link = link
        stats.connections_made += 1
        self._hello = hello = loop.create_future()
        link.write(self.firmware.connect(ts=int(self._clock()), battery=self._battery()))
        timeout = b.login_timeout
        if self._deadline is not None:
            timeout = max(0.01, min(timeout, self._deadline - self._clock()))
        try:
            await asyncio.wait_for(hello, timeout)
        except TimeoutError:
            if not self._stopping():
                stats.login_timeouts += 1
                log.warning("simulator.login_timeout", imei=self.imei, protocol=self.protocol)
            self._hang_up()
            self._schedule_reconnect(self._clock())
            return
        finally:
            self._hello = None
        if not self.online:
            # Refused: said so (Teltonika), or hung up on before any answer (how the others refuse).
            if not self._stopping():
                self._refused()
            self._hang_up()
            return
        self._backoff = self._refused_backoff = 0.0
        stats.logins += 1
        stats.connected += 1
        if self._ever_online:
            stats.reconnects += 1
        self._ever_online = True
        fw = self.firmware
        log.info(
            "simulator.logged_in", imei=self.imei, protocol=self.protocol, resending=len(fw.urgent) + len(fw.queue)
        )
        self._send(self._clock())

    def _refused(self) -> None:
        self.stats.logins_refused += 1
        first, longest = self.behaviour.refused_backoff
        self._refused_backoff = min(longest, self._refused_backoff * 2 or first)
        delay = self._refused_backoff * self._rng.uniform(0.75, 1.25)
        self._reconnect_at = self._clock() + delay
        log.warning("simulator.login_refused", imei=self.imei, protocol=self.protocol, retry_in=round(delay, 1))

    def _schedule_reconnect(self, now: float) -> float:
        first, longest = self.behaviour.reconnect_backoff
        self._backoff = min(longest, self._backoff * 2 or first)
        delay = self._backoff * self._rng.uniform(0.5, 1.0)
        self._reconnect_at = now + delay
        return delay

    def _hang_up(self) -> None:
        link = self._detach()
        if link is not None:
            link.close()

    def _detach(self) -> _Link | None:
        link, self.link = self.link, None
        if link is not None:
            if self.firmware.online:
                self.stats.connected -= 1
            self.firmware.disconnected()
        return link


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def run_tracker_simulation(
    protocol: str,
    host: str,
    port: int,
    imeis: list[str],
    *,
    rate: float = 0.2,
    duration: float | None = None,
    seed: int | None = None,
    stats: SimulationStats | None = None,
    sos_per_minute: float = FLEET_SOS_PER_MINUTE,
    stop: asyncio.Event | None = None,
    behaviour: TrackerBehaviour | None = None,
    give_up_unreachable: bool = False,
) -> SimulationStats:
    """Run trackers of `protocol` (one per IMEI) against the listener's port for it; see `run_simulation`,
    whose arguments these are (packets instead of frames)."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if sos_per_minute < 0:
        raise ValueError("sos_per_minute cannot be negative")
    device_type = registry.codec(protocol).device
    stats = stats if stats is not None else SimulationStats()
    stop = stop if stop is not None else asyncio.Event()
    deadline = time.time() + duration if duration is not None else None
    seeds = random.Random(seed)
    devices = [
        SimulatedTracker(
            device_type(imei),
            host,
            port,
            rate=rate,
            rng=random.Random(seeds.getrandbits(64)),
            stats=stats,
            stop=stop,
            deadline=deadline,
            behaviour=behaviour,
        )
        for imei in imeis
    ]
    sos_rng = random.Random(seeds.getrandbits(64))
    log.info("simulator.starting", protocol=protocol, host=host, port=port, devices=len(devices), rate=rate)

    await run_fleet(
        devices,
        host=host,
        port=port,
        stats=stats,
        stop=stop,
        sos_rng=sos_rng,
        sos_per_minute=sos_per_minute,
        give_up_unreachable=give_up_unreachable,
        name=protocol,
    )
    log.info("simulator.finished", protocol=protocol, **stats.as_dict())
    return stats
