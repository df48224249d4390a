"""A deliberately simple XSole device: raw bytes out, decoded frames in.

The benches drive the server with it, and so do the tests (which may import
from bench/, never the reverse: the benches run from an installed package).
"""

from __future__ import annotations

import asyncio
import time

from shared.protocols.xsole import (
    Ack,
    Activity,
    Alarm,
    BadCrc,
    FrameBuffer,
    Heartbeat,
    Login,
    LoginAck,
    Position,
    decode,
    encode,
)
from shared.protocols.xsole.constants import FLAG_FIX_VALID


def _wire(items: tuple[object, ...]) -> bytes:
    """Events encoded, byte strings as they are, back to back."""
    parts: list[bytes] = []
    for item in items:
        if isinstance(item, (bytes, bytearray)):
            parts.append(bytes(item))
        else:
            parts.append(encode(item))  # type: ignore[arg-type]  # an event, or encode raises
    return b"".join(parts)


class FrameMaker:
    """Device frames with plausible defaults (the contract's worked examples), numbered on
    one counter: for any test insole, whatever carries its bytes (TCP here, MQTT in tests)."""

    _seq = 0

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    def position(self, **fields: int) -> Position:
        values = {
            "ts": int(time.time()),
            "lat_e7": 436163000,
            "lon_e7": 70553000,
            "alt_m": 12,
            "speed_cms": 140,
            "course_ddeg": 2705,
            "sats": 9,
            "hdop_d": 8,
            "battery": 87,
            "flags": FLAG_FIX_VALID,
        } | fields
        return Position(self.next_seq(), **values)

    def heartbeat(self, **fields: int) -> Heartbeat:
        values = {"ts": int(time.time()), "battery": 87, "rssi": -71} | fields
        return Heartbeat(self.next_seq(), **values)

    def activity(self, **fields: int) -> Activity:
        values = {"ts": int(time.time()), "steps": 42, "state": 2, "cadence": 96, "battery": 87, "flags": 0} | fields
        return Activity(self.next_seq(), **values)

    def alarm(self, **fields: int) -> Alarm:
        values = {
            "ts": int(time.time()),
            "kind": 1,
            "lat_e7": 436163000,
            "lon_e7": 70553000,
            "battery": 87,
            "flags": FLAG_FIX_VALID,
        } | fields
        return Alarm(self.next_seq(), **values)


class XSoleTestClient(FrameMaker):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self._frames = FrameBuffer()
        self._seq = 0

    @classmethod
    async def connect(cls, host: str, port: int) -> XSoleTestClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, *items: object) -> None:
        """Send events (encoded here) and raw byte strings, in order, in one write."""
        data = _wire(items)
        self.writer.write(data)
        await self.writer.drain()

    async def send_in_pieces(self, *items: object, size: int = 1, pause: float = 0.001) -> None:
        """Like `send`, but as many small writes of `size` bytes with a pause between them."""
        data = _wire(items)
        for start in range(0, len(data), size):
            self.writer.write(data[start : start + size])
            await self.writer.drain()
            await asyncio.sleep(pause)

    async def recv(self, timeout: float = 3.0) -> object:
        """The next frame from the server, decoded; raises TimeoutError or EOFError."""

        async def read_one() -> object:
            while True:
                frame = self._frames.next_frame()
                if frame is not None and not isinstance(frame, BadCrc):
                    return decode(frame)
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("server closed the connection")
                self._frames.feed(data)

        return await asyncio.wait_for(read_one(), timeout)

    async def recv_acks(self, count: int, timeout: float = 5.0) -> dict[int, int]:
        """seq -> status for the next `count` ACKs (other frames are skipped)."""
        acks: dict[int, int] = {}
        received = 0
        while received < count:
            frame = await self.recv(timeout)
            if isinstance(frame, Ack):
                acks[frame.seq] = frame.status
                received += 1
        return acks

    async def recv_ack_list(self, count: int, timeout: float = 5.0) -> list[tuple[int, int]]:
        """(seq, status) of the next `count` ACKs in arrival order, repeats kept."""
        acks: list[tuple[int, int]] = []
        while len(acks) < count:
            frame = await self.recv(timeout)
            if isinstance(frame, Ack):
                acks.append((frame.seq, frame.status))
        return acks

    async def frames_until_closed(self, timeout: float = 3.0) -> list[object]:
        """Every frame the server sends until it closes; raises TimeoutError if it stays open."""

        async def read_all() -> list[object]:
            frames: list[object] = []
            while True:
                try:
                    frames.append(await self.recv(timeout))
                except (EOFError, ConnectionError):
                    return frames

        return await asyncio.wait_for(read_all(), timeout)

    async def login(self, imei: str, token: bytes, *, firmware: int = 0x0102) -> LoginAck:
        seq = self.next_seq()
        await self.send(Login(seq, imei, firmware, token))
        reply = await self.recv()
        assert isinstance(reply, LoginAck) and reply.seq == seq, reply
        return reply

    async def closed_by_server(self, timeout: float = 3.0) -> bool:
        """True once the server has closed the connection (frames still unread are dropped)."""

        async def wait_eof() -> None:
            while await self.reader.read(65536):
                pass

        try:
            await asyncio.wait_for(wait_eof(), timeout)
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
