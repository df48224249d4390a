"""The raw baseline for a tracker protocol: the codec's own session, answering at once, no store.

Every connection gets the protocol's `Session` (shared/protocols/<name>/session.py), as on the
listener's port, so the packets are framed, checksummed and decoded by the same code; but every
login is accepted without a look-up and every event is acknowledged as soon as it is decoded, with no
validation beyond the session's own, no store, no bus. `python -m bench.tracker_baseline PROTOCOL [PORT]`
prints the port it listens on.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

from shared.protocols import registry
from shared.protocols.tracker import TrackerSession
from shared.protocols.xsole.constants import AckStatus
from shared.protocols.xsole.messages import Login
from shared.protocols.xsole.session import Reply


class RawTrackerProtocol(asyncio.Protocol):
    def __init__(self, session: TrackerSession) -> None:
        self.session = session
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP connection's

    def data_received(self, data: bytes) -> None:
        session, out, events = self.session, bytearray(), 0
        session.receive_data(data)
        while (event := session.next_event()) is not None:
            if isinstance(event, Login):
                out += session.accept_login(event.imei, 0, 0)
            elif isinstance(event, Reply):
                out += event.data
                if event.close and self.transport is not None:
                    self.transport.write(bytes(out))
                    self.transport.close()
                    return
            else:
                events += 1
        if events:
            out += session.acks([0] * events, AckStatus.STORED)
        if out and self.transport is not None:
            self.transport.write(bytes(out))


async def serve(protocol: str, host: str, port: int) -> None:
    session_type = registry.codec(protocol).session
    server = await asyncio.get_running_loop().create_server(
        lambda: RawTrackerProtocol(session_type()), host, port, backlog=4096
    )
    sys.stdout.write(f"{server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(sys.argv[1], "127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0))
