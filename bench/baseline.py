"""The raw baseline: a server that only frames, CRC-checks and ACKs.

It uses the same framing code as the listener and answers every frame at once,
with no store, no bus and no validation, so the ratio of the listener's
throughput to this one's is the price of everything solewatch adds.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

from shared.protocols.xsole import BadCrc, FrameBuffer, FrameType
from shared.protocols.xsole.framing import encode_frame
from shared.protocols.xsole.messages import encode_ack

_LOGIN_ACK_OK = bytes((0,)) + (0).to_bytes(4, "big")


class RawAckProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.frames = FrameBuffer()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's

    def data_received(self, data: bytes) -> None:
        self.frames.feed(data)
        out = []
        while True:
            frame = self.frames.next_frame()
            if frame is None:
                break
            if isinstance(frame, BadCrc):
                continue
            if frame.type == FrameType.LOGIN:
                out.append(encode_frame(FrameType.LOGIN_ACK, frame.seq, _LOGIN_ACK_OK))
            else:
                out.append(encode_ack(frame.seq, 0))
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(RawAckProtocol, host, port, backlog=4096)
    sys.stdout.write(f"{server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
