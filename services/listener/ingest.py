"""The ingest step every transport shares: a link's session events to the committer.

A transport feeds its link's session with the bytes it received, then calls
`Ingest.pump`; the step takes what the session hands out (runs of telemetry
frames on the hot path, single events on the general path), validates,
submits to the group committer, sends the session's replies, and stops when
the session wants more bytes, when the link must wait (its window of frames
awaiting durability is full, or the committer is), or at a LOGIN, which the
transport then checks with `Ingest.login` (at once on TCP, in message order
over MQTT). The calls into the committer are all here.
"""

from __future__ import annotations

import enum
import time
from typing import Protocol

from services.listener import metrics
from services.listener.committer import GroupCommitter
from services.listener.link import CloseReason, DeviceLink
from services.listener.login_backoff import LoginBackoff, worth_logging
from services.listener.registry import Registry
from shared.config import Settings
from shared.logging import get_logger
from shared.protocols.xsole import AckStatus, DeviceSession, Login, LoginStatus, Reply, validate
from shared.store.batch import DeviceRef
from shared.store.port import Device, token_matches

log = get_logger("solewatch.listener")


class DeviceLookup(Protocol):
    """What a LOGIN check needs of the store."""

    async def device_by_imei(self, imei: str) -> Device | None: ...


class Stop(enum.Enum):
    """Why `Ingest.pump` returned (a LOGIN to check is returned as itself)."""

    NEED_DATA = "need_data"  # the session has nothing more to hand out for now
    FULL = "full"  # the link's window or the committer is full: the link was paused
    CLOSED = "closed"  # the link is closing


def login_verdict(device: Device | None, token: bytes, protocol: str = "xsole") -> LoginStatus:
    """The LOGIN_ACK status for a device record (None: unknown IMEI), the token it presented and the
    protocol it logged in with. A device registered for another protocol is refused as unknown
    (CONTRACT §10); only XSole devices carry a secret."""
    if device is None or device.protocol != protocol:
        return LoginStatus.UNKNOWN_DEVICE
    if protocol == "xsole" and not token_matches(token, device.token_hash):
        return LoginStatus.BAD_TOKEN
    if not device.enabled:
        return LoginStatus.DISABLED
    return LoginStatus.ACCEPTED


class Ingest:
    """One per listener process: what every link's frames go through."""

    def __init__(
        self,
        *,
        committer: GroupCommitter,
        devices: DeviceLookup,
        registry: Registry,
        login_backoff: LoginBackoff,
        settings: Settings,
    ):
        self.committer = committer
        self.devices = devices
        self.registry = registry
        self.login_backoff = login_backoff
        self.window = settings.max_unacked_per_connection  # frames awaiting durability per link

    def reload(self, settings: Settings) -> None:
        """New limits apply at once (SIGHUP)."""
        self.window = settings.max_unacked_per_connection

    def pump(self, link: DeviceLink, now: float) -> Login | Stop:
        """Take `link`'s session events until it needs more bytes, must wait, or has a LOGIN.

        `now` is when the bytes arrived (received_at of the frames), even if handled later.
        """
        session = link.session
        committer = self.committer
        window = self.window
        while not link.closing:
            if link.unacked >= window:
                link.pause()
                return Stop.FULL
            if committer.overloaded:
                committer.stall(link)
                link.pause()
                return Stop.FULL
            # The hot path first: whole, in-range telemetry frames decoded in one call.
            run = session.take_telemetry(now, window - link.unacked)
            if run is not None:
                link.unacked += len(run.seqs)
                committer.add_run(link, link.device_ref, run, now)
                # A device that sends one frame per segment (most do, most of the time) ends here: with
                # every byte taken, asking the session again would only say so, at ~1 µs a read.
                if session.drained and link.unacked < window and not committer.overloaded:
                    return Stop.NEED_DATA
                continue
            event = session.next_event()
            if event is None:
                return Stop.NEED_DATA
            if type(event) is Reply:
                self.reply(link, event)
                continue
            if type(event) is Login:
                link.pause()  # nothing more is taken until the verdict
                return event
            # A tracker session judged its events itself (dropping, counting and still answering the bad
            # ones, tracker.py): judged again here at another instant, an event on the 5-minute future
            # bound could be refused after all, and its packet's answer would be owed to the wrong packet.
            reason = (
                validate(event, now)  # type: ignore[arg-type]  # next_event's other events are DeviceEvents
                if session.protocol == "xsole"
                else None
            )
            if reason is not None:
                seq: int = event.seq  # type: ignore[union-attr]  # as above: a DeviceEvent, which has a seq
                metrics.frames_rejected.labels(session.protocol).inc()
                metrics.ACKS_BY_STATUS[AckStatus.REJECTED].inc()
                # Through the session: a tracker protocol's packet is answered once all its events are.
                link.send(session.acks([seq], AckStatus.REJECTED))
                log.info("frame_rejected", imei=session.imei, protocol=session.protocol, seq=seq, reason=reason)
                continue
            link.unacked += 1
            committer.add_event(link, link.device_ref, event, now)  # type: ignore[arg-type]  # a LOGIN returned above
        return Stop.CLOSED

    def reply(self, link: DeviceLink, reply: Reply) -> None:
        """Send what the session asked to send, then close the link if it asked to."""
        if reply.data:
            link.send(reply.data)
            # An XSole ACK: count it by its status byte (other protocols' replies are their own bytes).
            if reply.data[3:4] == b"\x80" and type(link.session) is DeviceSession:
                metrics.ACKS_BY_STATUS[AckStatus(reply.data[8])].inc()
        if reply.close:
            assert reply.end is not None  # the session says why it closes
            link.close(CloseReason.of(reply.end), reply.reason)
        elif reply.reason:
            log.info("frame_refused", imei=link.session.imei, protocol=link.session.protocol, reason=reply.reason)

    async def login(self, link: DeviceLink, login: Login) -> bool:
        """Answer the LOGIN the session handed out (the same routine for every transport).

        True when accepted: the link is online and its caller goes on pumping.
        """
        server_time = int(time.time())
        device: Device | None = None
        expected = link.login_imei
        if expected is not None and login.imei != expected:
            log.warning("login_refused_topic_mismatch", topic_imei=expected, login_imei=login.imei, peer=link.peer)
            status = LoginStatus.UNKNOWN_DEVICE  # no such device *on this link*
        else:
            try:
                device = await self.devices.device_by_imei(login.imei)
            except Exception as exc:
                # We cannot tell a good token from a bad one: no LOGIN_ACK, the device retries later.
                log.error("login_lookup_failed", imei=login.imei, error=str(exc), peer=link.peer)
                metrics.logins.labels(link.session.protocol, "store_unavailable").inc()
                link.close(CloseReason.STORE_UNAVAILABLE)
                return False
            if link.closing:
                return False
            status = login_verdict(device, login.token, link.session.protocol)
        metrics.logins.labels(link.session.protocol, status.name.lower()).inc()
        if status is not LoginStatus.ACCEPTED or device is None:
            await self._refuse(link, login, status, server_time)
            return False
        if not await link.login_accepted(device):
            return False
        link.device = device
        link.device_ref = DeviceRef(device.id, device.tenant_id, device.imei)
        link.send(link.session.accept_login(login.imei, server_time, login.seq))
        log.info(
            "device_online",
            imei=login.imei,
            protocol=link.session.protocol,
            firmware=f"0x{login.firmware:04x}",
            peer=link.peer,
        )
        self.registry.logged_in(link)
        return True

    async def _refuse(self, link: DeviceLink, login: Login, status: LoginStatus, server_time: int) -> None:
        """LOGIN_ACK with the refusal at once, then end the link: at once the first time, after a
        growing delay while this IMEI or this address keeps failing (login_backoff.py)."""
        reply = link.session.reject_login(status, server_time, login.seq)
        link.send(reply.data)
        imei = link.login_imei or login.imei
        failures, delay = await self.login_backoff.refused(imei=imei, address=link.address, status=status)
        if worth_logging(failures):
            log.warning(
                "login_refused",
                imei=login.imei,
                protocol=link.session.protocol,
                status=status.name,
                peer=link.peer,
                consecutive_failures=failures,
                held_s=delay,
            )
        await link.login_refused(CloseReason.LOGIN_REFUSED, delay)
