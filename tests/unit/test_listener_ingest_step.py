"""The ingest step (services/listener/ingest.py) on a link that is no transport at all.

What a new transport can count on: the step drives the session, pauses the
link for a LOGIN and when its window is full, answers the LOGIN through the
one login routine, submits frames to the committer, and closes the link with
a CloseReason when the session ends itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from services.listener.committer import GroupCommitter
from services.listener.ingest import Ingest, Stop
from services.listener.link import CloseReason, DeviceLink
from services.listener.login_backoff import LoginBackoff
from services.listener.registry import Registry
from shared.config import Settings
from shared.protocols.xsole import (
    Ack,
    AckStatus,
    DeviceSession,
    FrameBuffer,
    Login,
    LoginAck,
    Position,
    SessionEnd,
    decode,
    encode,
)
from shared.protocols.xsole.messages import encode_acks
from shared.store.batch import DeviceRef
from shared.store.port import CommandRecord, Device, hash_device_token

IMEI = "356307042441013"
TOKEN = bytes(range(16))
DEVICE = Device(7, 3, IMEI, "test", hash_device_token(TOKEN), True, 0.0)


class FakeLink:
    """The smallest DeviceLink: records what the step asks of it."""

    login_imei: str | None = None
    address: str | None = None
    peer = "fake"

    def __init__(self) -> None:
        self.session = DeviceSession()
        self.device: Device | None = None
        self.device_ref = DeviceRef(0, 0, "")
        self.unacked = 0
        self.last_seen_wall = time.time()
        self.sent = bytearray()
        self.paused = False
        self.closed: CloseReason | None = None

    @property
    def closing(self) -> bool:
        return self.closed is not None

    def send(self, data: bytes) -> None:
        self.sent += data

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def close(self, reason: CloseReason, detail: str | None = None) -> None:
        self.closed = reason

    async def login_accepted(self, device: Device) -> bool:
        return True

    async def login_refused(self, reason: CloseReason, hold_s: float) -> None:
        self.close(reason)

    def queue_acks(self, seqs: list[int], status: AckStatus) -> None:
        self.unacked -= len(seqs)
        self.sent += encode_acks(seqs, status)

    def flush_acks(self) -> None: ...

    def resume_if_possible(self) -> None: ...

    def replies(self) -> list[object]:
        frames = FrameBuffer()
        frames.feed(bytes(self.sent))
        return [decode(frame) for frame in iter(frames.next_frame, None)]  # type: ignore[arg-type]


class Devices:
    async def device_by_imei(self, imei: str) -> Device | None:
        return DEVICE if imei == IMEI else None


class NoCommands:
    async def enqueue_command(self, *, device_id: int, cmd: int, args: bytes = b"") -> int:
        return 1

    async def commands_to_send(
        self, device_ids: Sequence[int] | None = None, *, include_unanswered: bool = False
    ) -> list[CommandRecord]:
        return []

    async def mark_command_sent(self, command_id: int, seq: int) -> bool: ...


def _link_type_check(link: FakeLink) -> DeviceLink:
    return link  # mypy checks here that FakeLink is a DeviceLink


@pytest.fixture
def ingest(tmp_path: Path) -> Ingest:
    settings = Settings(data_dir=tmp_path, max_unacked_per_connection=2)  # type: ignore[call-arg]

    async def durable(_: object) -> None: ...

    registry = Registry(store=NoCommands(), cache=None, bus=None, settings=lambda: settings, spawn=_close)
    return Ingest(
        committer=GroupCommitter(durable, max_batch=100, max_pending=100),
        devices=Devices(),
        registry=registry,
        login_backoff=LoginBackoff(None, lambda: settings),
        settings=settings,
    )


def _close(coro: object) -> None:
    coro.close()  # type: ignore[attr-defined]  # the registry's background work is not under test here


def position(seq: int) -> Position:
    return Position(seq, int(time.time()) - 10, 436163000, 70553000, 12, 140, 2705, 9, 8, 87, 1)


async def test_a_login_pauses_the_link_and_the_login_routine_puts_it_online(ingest: Ingest) -> None:
    link = FakeLink()
    link.session.receive_data(encode(Login(1, IMEI, 0x0102, TOKEN)) + encode(position(2)))

    login = ingest.pump(link, time.time())
    assert login == Login(1, IMEI, 0x0102, TOKEN) and link.paused

    assert await ingest.login(link, login)
    assert link.device == DEVICE and link.device_ref == DeviceRef(7, 3, IMEI)
    assert ingest.registry.online == {IMEI: link}
    reply = link.replies()[0]
    assert isinstance(reply, LoginAck) and reply.status == 0

    assert ingest.pump(link, time.time()) is Stop.NEED_DATA
    assert link.unacked == 1 and ingest.committer.pending == 1  # the position went to the committer


async def test_a_full_window_pauses_the_link(ingest: Ingest) -> None:
    link = FakeLink()
    link.session.receive_data(encode(Login(1, IMEI, 0x0102, TOKEN)))
    assert await ingest.login(link, ingest.pump(link, time.time()))  # type: ignore[arg-type]
    link.paused = False
    link.session.receive_data(b"".join(encode(position(seq)) for seq in range(2, 6)))

    assert ingest.pump(link, time.time()) is Stop.FULL
    assert link.paused and link.unacked == 2  # the window of this test's settings


async def test_a_read_that_fills_the_window_exactly_pauses_the_link(ingest: Ingest) -> None:
    # Every byte of the read is taken, so the session has nothing more to say: the link must stop
    # being read all the same, before a next read brings frames the window has no room for.
    link = FakeLink()
    link.session.receive_data(encode(Login(1, IMEI, 0x0102, TOKEN)))
    assert await ingest.login(link, ingest.pump(link, time.time()))  # type: ignore[arg-type]
    link.paused = False
    link.session.receive_data(encode(position(2)))
    assert ingest.pump(link, time.time()) is Stop.NEED_DATA and not link.paused
    link.session.receive_data(encode(position(3)))

    assert ingest.pump(link, time.time()) is Stop.FULL
    assert link.paused and link.unacked == 2


async def test_a_refused_login_ends_the_link_with_its_reason(ingest: Ingest) -> None:
    link = FakeLink()
    link.session.receive_data(encode(Login(1, IMEI, 0x0102, bytes(16))))

    assert not await ingest.login(link, ingest.pump(link, time.time()))  # type: ignore[arg-type]
    assert link.closed is CloseReason.LOGIN_REFUSED
    assert link.replies() == [LoginAck(1, 2, link.replies()[0].server_time)]  # type: ignore[attr-defined]


async def test_a_session_that_ends_itself_closes_the_link_with_the_matching_reason(ingest: Ingest) -> None:
    link = FakeLink()
    link.session.receive_data(encode(position(1)))

    assert ingest.pump(link, time.time()) is Stop.CLOSED
    assert link.closed is CloseReason.FRAME_BEFORE_LOGIN
    assert link.replies() == [Ack(1, 3)]


@pytest.mark.parametrize("end", list(SessionEnd))
def test_every_way_a_session_ends_has_a_close_reason(end: SessionEnd) -> None:
    assert isinstance(CloseReason.of(end), CloseReason)
