"""A deliberately simple XSole device for tests: raw bytes out, decoded frames in."""

from __future__ import annotations

import asyncio

from shared.protocols.xsole import (
    Ack, BadCrc, FrameBuffer, Login, LoginAck, decode, encode,
)


class XSoleTestClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self._frames = FrameBuffer()
        self._seq = 0

    @classmethod
    async def connect(cls, host: str, port: int) -> "XSoleTestClient":
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFF
        return self._seq

    async def send(self, *items: object) -> None:
        """Send events (encoded here) and raw byte strings, in order, in one write."""
        data = b"".join(item if isinstance(item, (bytes, bytearray)) else encode(item) for item in items)  # type: ignore[arg-type]
        self.writer.write(data)
        await self.writer.drain()

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
