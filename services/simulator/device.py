"""One simulated insole on the wire: login, send window, retransmission, reconnection.

Each insole is one task running a small loop (record what is due, retransmit what
timed out, sleep until the next deadline) plus an `asyncio.Protocol` whose
callbacks handle ACKs and COMMANDs at once, so a thousand insoles cost a
thousand mostly-sleeping tasks and no reader tasks.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import cast

import structlog

from services.simulator.walk import DEFAULT_SOS_PER_MINUTE, InsoleTelemetry
from shared.protocols.xsole import (
    Ack,
    AckStatus,
    Alarm,
    AlarmKind,
    BadCrc,
    Command,
    CommandCode,
    CommandResult,
    CommandStatus,
    DeviceEvent,
    FrameBuffer,
    Login,
    LoginAck,
    LoginStatus,
    Position,
    XSoleProtocolError,
    decode,
    encode,
)

log = structlog.get_logger("solewatch.simulator")

_SUPPORTED_COMMANDS = frozenset(
    (
        CommandCode.LOCATE_NOW,
        CommandCode.SET_INTERVAL,
        CommandCode.VIBRATE,
        CommandCode.ALARM_ACKNOWLEDGED,
    )
)


@dataclass(frozen=True, slots=True)
class SimulatedInsole:
    imei: str  # 15 digits
    token: bytes  # 16 bytes, the device secret issued at registration

    def __post_init__(self) -> None:
        if len(self.imei) != 15 or not self.imei.isdigit():
            raise ValueError(f"an IMEI is 15 digits, got {self.imei!r}")
        if len(self.token) != 16:
            raise ValueError(f"a device token is 16 bytes, got {len(self.token)}")


@dataclass
class SimulationStats:
    """Counters over all insoles of a simulation, updated live."""

    connected: int = 0  # insoles logged in right now
    logins: int = 0
    logins_refused: int = 0
    login_timeouts: int = 0
    connect_failures: int = 0
    connections_made: int = 0  # TCP connections that opened, whatever came of the login
    connections_lost: int = 0
    reconnects: int = 0  # logins after a previous session of the same insole ended
    frames_sent: int = 0  # first transmissions (LOGIN excluded)
    positions_sent: int = 0
    retransmissions: int = 0
    bytes_sent: int = 0
    acks_stored: int = 0
    acks_rejected: int = 0
    acks_busy: int = 0
    acks_other: int = 0  # unsupported type, not logged in
    acks_unexpected: int = 0  # for a seq not in flight, e.g. a late ACK of a retransmitted frame
    alarms_sent: int = 0
    sos_sent: int = 0
    low_battery_sent: int = 0
    commands_received: int = 0
    commands_unsupported: int = 0
    coverage_gaps: int = 0
    frames_buffered: int = 0  # recorded while offline, sent late with the buffered flag
    frames_dropped: int = 0  # offline buffer overflowed
    frames_unsent: int = 0  # still waiting when the simulation ended

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class InsoleBehaviour:
    """Firmware timings and habits, shared by all insoles of a simulation."""

    firmware: int = 0x0102
    window: int = 8  # un-ACKed frames in flight
    ack_timeout: float = 5.0  # retransmit a frame not ACKed within this
    busy_retry: float = 2.0  # retransmit this long after ACK status 4
    max_tries: int = 4  # transmissions on one connection without any ACK before dropping it
    activity_interval: float = 30.0
    heartbeat_interval: float = 60.0
    connect_timeout: float = 10.0
    login_timeout: float = 10.0
    reconnect_backoff: tuple[float, float] = (1.0, 60.0)  # first and longest delay
    refused_backoff: tuple[float, float] = (30.0, 900.0)
    gap_every: float | None = 1800.0  # mean seconds between coverage gaps; None: never
    gap_duration: tuple[float, float] = (20.0, 180.0)
    buffer_limit: int = 4000  # frames kept while offline; the oldest go first
    startup_spread: float = 5.0  # insoles start within this many seconds
    drain_timeout: float = 2.0  # at the end, wait this long for outstanding ACKs


@dataclass(slots=True)
class _Outgoing:
    seq: int
    data: bytes  # encoded once: a retransmission is the same bytes
    event: DeviceEvent
    deadline: float = 0.0
    tries: int = 0  # transmissions on the current connection
    sent: bool = False


class _Link(asyncio.Protocol):
    """Bytes in, events to the device; never parses beyond the codec."""

    def __init__(self, device: InsoleDevice) -> None:
        self.device = device
        self.frames = FrameBuffer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's

    def data_received(self, data: bytes) -> None:
        self.frames.feed(data)
        while self.device.link is self:
            try:
                frame = self.frames.next_frame()
            except XSoleProtocolError as exc:
                log.warning("simulator.server_framing_error", imei=self.device.imei, error=str(exc))
                self.close()
                return
            if frame is None:
                return
            if not isinstance(frame, BadCrc):
                self.device.on_event(decode(frame))

    def connection_lost(self, exc: Exception | None) -> None:
        self.device.on_connection_lost(self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class InsoleDevice:
    """A simulated insole's firmware: records telemetry, streams it, survives the network."""

    def __init__(
        self,
        insole: SimulatedInsole,
        host: str,
        port: int,
        *,
        rate: float,
        rng: random.Random,
        stats: SimulationStats,
        stop: asyncio.Event,
        deadline: float | None = None,
        sos_per_minute: float = DEFAULT_SOS_PER_MINUTE,
        behaviour: InsoleBehaviour | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.insole = insole
        self.imei = insole.imei
        self.host, self.port = host, port
        self.stats = stats
        self.behaviour = b = behaviour or InsoleBehaviour()
        self._rng = rng
        self._stop = stop
        self._deadline = deadline
        self._clock = clock
        self._seq = 0
        self.telemetry = InsoleTelemetry(
            rng,
            clock(),
            next_seq=self._next_seq,
            position_interval=1.0 / rate,
            activity_interval=b.activity_interval,
            heartbeat_interval=b.heartbeat_interval,
            sos_per_minute=sos_per_minute,
        )
        self.link: _Link | None = None
        self.online = False  # logged in on `link`
        self._ever_online = False
        self._in_flight: dict[int, _Outgoing] = {}  # insertion order is send order
        self._urgent: deque[_Outgoing] = deque()  # alarms and command results jump the queue
        self._queue: deque[_Outgoing] = deque()
        self._reconnect_at = 0.0
        self._backoff = 0.0
        self._refused_backoff = 0.0
        self._gap_until: float | None = None
        self._next_gap_at: float | None = None
        self._login: tuple[int, asyncio.Future[LoginAck | None]] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._sleep_until = 0.0
        self._draining = False

    # -- the device's loop -------------------------------------------------

    async def run(self) -> None:
        """Live until the stop event or the deadline, then flush briefly and hang up."""
        await self._sleep(self._rng.uniform(0, min(self.behaviour.startup_spread, self.telemetry.position_interval)))
        try:
            while not self._stopping():
                now = self._clock()
                if self._gap_until is not None and now >= self._gap_until:
                    self._gap_until = None
                    self._reconnect_at = now
                if self.link is None and self._gap_until is None and now >= self._reconnect_at:
                    await self._connect()
                    continue
                self._record(now)
                if self.online:
                    self._retransmit_due(now)
                    self._pump()
                    if self._next_gap_at is not None and now >= self._next_gap_at:
                        self._begin_gap(now)
                        continue
                await self._sleep(self._next_wake() - now)
            await self._drain()
        finally:
            self._hang_up()
            self.stats.frames_unsent += len(self._in_flight) + len(self._urgent) + len(self._queue)

    def wake(self) -> None:
        """Interrupt the loop's sleep (or a login wait) so it looks at the world again."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._stop.is_set() and self._login is not None and not self._login[1].done():
            self._login[1].set_result(None)

    def raise_sos(self) -> None:
        """The worker presses SOS now: sent at once when online, else as soon as it reconnects."""
        self._enqueue(self.telemetry.sos_now(self._clock(), buffered=not self.online))
        self._pump()

    def _stopping(self) -> bool:
        return self._stop.is_set() or (self._deadline is not None and self._clock() >= self._deadline)

    def _next_wake(self) -> float:
        wake = self.telemetry.next_due
        if self.online:
            for out in self._in_flight.values():
                wake = min(wake, out.deadline)
            if self._next_gap_at is not None:
                wake = min(wake, self._next_gap_at)
        elif self._gap_until is not None:
            wake = min(wake, self._gap_until)
        elif self.link is None:
            wake = min(wake, self._reconnect_at)
        if self._deadline is not None:
            wake = min(wake, self._deadline)
        return wake

    async def _sleep(self, delay: float) -> None:
        """Sleep up to `delay` seconds; `wake()` cuts it short. No task per sleep."""
        loop = asyncio.get_running_loop()
        if delay <= 0:
            await asyncio.sleep(0)
            return
        self._waiter = waiter = loop.create_future()
        self._sleep_until = self._clock() + delay
        handle = loop.call_later(delay, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    # -- recording and sending -----------------------------------------------

    def _record(self, now: float) -> None:
        self._enqueue(self.telemetry.advance(now, buffered=not self.online))

    def _enqueue(self, events: Sequence[DeviceEvent]) -> None:
        buffered = not self.online
        for event in events:
            out = _Outgoing(event.seq, encode(event), event)
            if isinstance(event, (Alarm, CommandResult)):
                self._urgent.append(out)
            else:
                self._queue.append(out)
            if buffered:
                self.stats.frames_buffered += 1
        while len(self._queue) > self.behaviour.buffer_limit:
            self._queue.popleft()
            self.stats.frames_dropped += 1

    def _pump(self) -> None:
        """Fill the send window from the queues."""
        window = self.behaviour.window
        while self.online and len(self._in_flight) < window and (self._urgent or self._queue):
            out = (self._urgent or self._queue).popleft()
            self._in_flight[out.seq] = out
            self._transmit(out)

    def _transmit(self, out: _Outgoing) -> None:
        assert self.link is not None
        self.link.write(out.data)
        self.stats.bytes_sent += len(out.data)
        out.tries += 1
        out.deadline = self._clock() + self.behaviour.ack_timeout
        if out.sent:
            self.stats.retransmissions += 1
        else:
            out.sent = True
            self._count_first_send(out.event)
        self._arm(out.deadline)

    def _count_first_send(self, event: DeviceEvent) -> None:
        stats = self.stats
        stats.frames_sent += 1
        if isinstance(event, Position):
            stats.positions_sent += 1
        elif isinstance(event, Alarm):
            stats.alarms_sent += 1
            if event.kind == AlarmKind.SOS:
                stats.sos_sent += 1
                log.info("simulator.sos", imei=self.imei, seq=event.seq)
            elif event.kind == AlarmKind.LOW_BATTERY:
                stats.low_battery_sent += 1

    def _retransmit_due(self, now: float) -> None:
        for out in list(self._in_flight.values()):
            if out.deadline > now:
                continue
            if out.tries >= self.behaviour.max_tries:
                log.warning("simulator.no_ack", imei=self.imei, seq=out.seq, tries=out.tries)
                self._drop_link(now)
                return
            self._transmit(out)

    def _arm(self, deadline: float) -> None:
        if self._waiter is not None and deadline < self._sleep_until:
            self.wake()

    async def _drain(self) -> None:
        """At the end, give frames in flight a moment to be ACKed."""
        self._draining = True
        until = self._clock() + self.behaviour.drain_timeout
        while self.online and (self._in_flight or self._urgent or self._queue):
            now = self._clock()
            if now >= until:
                break
            self._retransmit_due(now)
            self._pump()
            wake = min([until, *(o.deadline for o in self._in_flight.values())])
            await self._sleep(wake - now)

    # -- events from the server ------------------------------------------------

    def on_event(self, event: object) -> None:
        if isinstance(event, Ack):
            self._on_ack(event)
        elif isinstance(event, Command):
            self._on_command(event)
        elif isinstance(event, LoginAck):
            if self._login is not None and self._login[0] == event.seq and not self._login[1].done():
                self._login[1].set_result(event)
        else:
            log.warning("simulator.unexpected_frame", imei=self.imei, frame=type(event).__name__)

    def _on_ack(self, ack: Ack) -> None:
        out = self._in_flight.get(ack.seq)
        stats = self.stats
        if out is None:
            stats.acks_unexpected += 1
            return
        if ack.status == AckStatus.BUSY:
            stats.acks_busy += 1
            out.deadline = self._clock() + self.behaviour.busy_retry * self._rng.uniform(0.5, 1.5)
            out.tries = 0  # the server is alive, just busy
            self._arm(out.deadline)
            return
        if ack.status == AckStatus.NOT_LOGGED_IN:
            stats.acks_other += 1  # the server closes; the frame goes again after the next login
            return
        del self._in_flight[ack.seq]
        if ack.status == AckStatus.STORED:
            stats.acks_stored += 1
        elif ack.status == AckStatus.REJECTED:
            stats.acks_rejected += 1
            log.warning(
                "simulator.frame_rejected",
                imei=self.imei,
                seq=ack.seq,
                frame=type(out.event).__name__,
            )
        else:
            stats.acks_other += 1
        for pending in self._in_flight.values():
            pending.tries = min(pending.tries, 1)  # an ACK proves the link is alive
        self._pump()
        if self._draining and not (self._in_flight or self._urgent or self._queue):
            self.wake()

    def _on_command(self, command: Command) -> None:
        self.stats.commands_received += 1
        now = self._clock()
        status = CommandStatus.DONE if command.cmd in _SUPPORTED_COMMANDS else CommandStatus.UNSUPPORTED
        if command.cmd == CommandCode.LOCATE_NOW:
            self._enqueue(self.telemetry.locate_now(now))
        elif command.cmd == CommandCode.SET_INTERVAL and len(command.args) in (1, 2):
            seconds = int.from_bytes(command.args, "big")
            if seconds:
                self.telemetry.set_position_interval(float(seconds))
                self._arm(self.telemetry.next_due)
        if status is CommandStatus.UNSUPPORTED:
            self.stats.commands_unsupported += 1
        log.info(
            "simulator.command",
            imei=self.imei,
            seq=command.seq,
            cmd=_command_name(command.cmd),
            status=status.name,
        )
        self._enqueue([CommandResult(self._next_seq(), command.seq, int(status))])
        self._pump()

    def on_connection_lost(self, link: _Link) -> None:
        if link is not self.link:
            return  # a link this device already hung up
        now = self._clock()
        self.stats.connections_lost += 1
        log.info("simulator.connection_lost", imei=self.imei)
        self._detach()
        self._schedule_reconnect(now)
        if self._login is not None and not self._login[1].done():
            self._login[1].set_result(None)
        self.wake()

    # -- connection life ---------------------------------------------------------

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
            log.info(
                "simulator.connect_failed",
                imei=self.imei,
                error=repr(exc),
                retry_in=round(delay, 1),
            )
            return
        self.link = link
        stats.connections_made += 1
        seq = self._next_seq()
        login_ack: asyncio.Future[LoginAck | None] = loop.create_future()
        self._login = (seq, login_ack)
        link.write(encode(Login(seq, self.imei, b.firmware, self.insole.token)))
        timeout = b.login_timeout
        if self._deadline is not None:
            timeout = max(0.01, min(timeout, self._deadline - self._clock()))
        try:
            ack = await asyncio.wait_for(login_ack, timeout)
        except TimeoutError:
            if not self._stopping():
                stats.login_timeouts += 1
                log.warning("simulator.login_timeout", imei=self.imei)
            self._hang_up()
            self._schedule_reconnect(self._clock())
            return
        finally:
            self._login = None
        if ack is None:  # connection lost or stopping
            self._hang_up()
            return
        now = self._clock()
        if ack.status != LoginStatus.ACCEPTED:
            stats.logins_refused += 1
            first, longest = b.refused_backoff
            self._refused_backoff = min(longest, self._refused_backoff * 2 or first)
            delay = self._refused_backoff * self._rng.uniform(0.75, 1.25)
            self._reconnect_at = now + delay
            log.warning(
                "simulator.login_refused",
                imei=self.imei,
                status=_status_name(ack.status),
                retry_in=round(delay, 1),
            )
            self._hang_up()
            return
        self.online = True
        self._backoff = self._refused_backoff = 0.0
        stats.logins += 1
        stats.connected += 1
        if self._ever_online:
            stats.reconnects += 1
        self._ever_online = True
        if b.gap_every:
            self._next_gap_at = now + self._rng.expovariate(1 / b.gap_every)
        log.info(
            "simulator.logged_in",
            imei=self.imei,
            resending=len(self._in_flight),
            queued=len(self._queue),
        )
        for out in list(self._in_flight.values()):
            out.tries = 0
            self._transmit(out)  # same seq, same bytes as before the drop
        self._pump()

    def _begin_gap(self, now: float) -> None:
        """Lose coverage for a while: hang up, keep recording (buffered), come back later."""
        low, high = self.behaviour.gap_duration
        self._gap_until = now + self._rng.uniform(low, high)
        self._next_gap_at = None
        self.stats.coverage_gaps += 1
        log.info("simulator.coverage_gap", imei=self.imei, seconds=round(self._gap_until - now, 1))
        self._hang_up()

    def _drop_link(self, now: float) -> None:
        """Give up on a connection that stopped answering, and reconnect later."""
        self.stats.connections_lost += 1
        self._hang_up()
        self._schedule_reconnect(now)

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
        if self.online:
            self.online = False
            self.stats.connected -= 1
        self._next_gap_at = None
        return link


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _command_name(cmd: int) -> str:
    try:
        return CommandCode(cmd).name
    except ValueError:
        return str(cmd)


def _status_name(status: int) -> str:
    try:
        return LoginStatus(status).name
    except ValueError:
        return str(status)
