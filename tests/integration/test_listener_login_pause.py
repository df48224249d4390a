"""A TCP connection reads nothing more while its LOGIN is being checked (docs/listener.md).

Whatever a device sends behind its LOGIN waits in the socket, not in the
listener's memory, until the verdict; then it is taken in order.
"""

from __future__ import annotations

import asyncio

from shared.protocols.xsole import Login, LoginAck

IMEI = "356307042441013"


async def test_reading_stays_paused_until_the_login_verdict(solewatch, monkeypatch):
    token = await solewatch.register(IMEI)
    store = solewatch.listener.store
    lookup = store.device_by_imei
    verdict = asyncio.Event()
    looking_up = asyncio.Event()

    async def slow_lookup(imei: str):  # type: ignore[no-untyped-def]
        looking_up.set()
        await verdict.wait()
        return await lookup(imei)

    monkeypatch.setattr(store, "device_by_imei", slow_lookup)
    device = await solewatch.device()
    positions = [device.position() for _ in range(3)]
    await device.send(Login(device.next_seq(), IMEI, 0x0102, token))
    await asyncio.wait_for(looking_up.wait(), 10)
    await device.send(*positions)
    await asyncio.sleep(0.1)  # time for the listener to read them, were it reading

    (connection,) = solewatch.listener.connections
    assert connection._paused  # the socket is not read while the login is pending

    verdict.set()
    reply = await device.recv()
    assert isinstance(reply, LoginAck) and reply.status == 0
    assert await device.recv_acks(3) == {p.seq: 0 for p in positions}
    await device.close()
