"""Issue 12 item 6: wrong device tokens are throttled per IMEI and per source
address, and the right token is never slowed.

A refused LOGIN still gets its LOGIN_ACK at once (contract §1 rule 1); what
grows is how long the listener holds the connection, unread, before closing it.
The delays here are long (tens of seconds) so that "still open" is certain
while the test looks, and the test closes the held connections itself.
"""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from shared.protocols.xsole import Login, LoginAck
from tests.conftest import embedded_settings

IMEI = "356307042441013"
BASE = 20.0
LONG_HOLDS = {"device_login_backoff": BASE, "device_login_backoff_max": 2 * BASE, "login_timeout": 120}


@pytest.fixture
def solewatch_settings(request, tmp_path):
    return embedded_settings(tmp_path / "data", **getattr(request, "param", LONG_HOLDS))


def wrong(token: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in token)


async def refused_login(solewatch, imei: str, token: bytes, seq: int = 7):
    """A connection whose LOGIN was refused: (the client, the LOGIN_ACK status)."""
    client = await solewatch.device()
    await client.send(Login(seq, imei, 0x0102, token))
    reply = await client.recv()
    assert isinstance(reply, LoginAck) and reply.seq == seq
    return client, reply.status


def holds(logs: list[dict]) -> list[float]:
    return [line["held_s"] for line in logs if line["event"] == "login_refused"]


async def test_wrong_tokens_for_one_imei_are_held_longer_each_time_and_the_right_one_gets_straight_in(solewatch):
    token = await solewatch.register(IMEI)

    with capture_logs() as logs:
        first, status = await refused_login(solewatch, IMEI, wrong(token))
        assert status == 2 and await first.closed_by_server()  # one mistake: closed at once, as before
        held = []
        for _ in range(2):
            client, status = await refused_login(solewatch, IMEI, wrong(token))
            assert status == 2
            held.append(client)

        # The device itself, with its right token, from the same address, meanwhile:
        device = await solewatch.device()
        assert (await device.login(IMEI, token)).status == 0
        position = device.position()
        await device.send(position)
        assert await device.recv_acks(1) == {position.seq: 0}

        # ...while both refused connections are still held open.
        for client in held:
            assert not await client.closed_by_server(timeout=0.3)

    assert holds(logs) == [0.0, BASE, 2 * BASE]
    for client in [*held, device]:
        await client.close()


async def test_wrong_tokens_from_one_address_are_held_whatever_imei_they_name(solewatch):
    imeis = ["356307042441013", "356307042441021", "356307042441039"]
    tokens = [await solewatch.register(imei) for imei in imeis]

    with capture_logs() as logs:
        clients = []
        for imei, token in zip(imeis, tokens, strict=True):  # each IMEI fails only once
            client, status = await refused_login(solewatch, imei, wrong(token))
            assert status == 2
            clients.append(client)
        unknown, status = await refused_login(solewatch, "356307042441047", bytes(16))
        assert status == 1  # an unknown IMEI is still answered as such, and counts for the address

        assert await clients[0].closed_by_server()
        for client in [*clients[1:], unknown]:
            assert not await client.closed_by_server(timeout=0.3)

    assert holds(logs) == [0.0, BASE, 2 * BASE, 2 * BASE]
    for client in [*clients, unknown]:
        await client.close()


@pytest.mark.parametrize("solewatch_settings", [{"device_login_backoff": 0.05}], indirect=True, ids=["short holds"])
async def test_a_held_connection_is_closed_after_its_delay(solewatch):
    token = await solewatch.register(IMEI)
    for _ in range(3):
        client = await solewatch.device()
        await client.send(Login(3, IMEI, 0x0102, wrong(token)))
        assert [(type(f), f.seq, f.status) for f in await client.frames_until_closed()] == [(LoginAck, 3, 2)]


async def test_a_reconnect_storm_behind_one_address_is_not_slowed_by_failing_neighbours(solewatch):
    imeis = [f"3563070424{i:05d}" for i in range(150)]
    tokens = {imei: await solewatch.register(imei) for imei in imeis}
    stale = await solewatch.register("356307042499999")

    # Devices behind one NAT with a stale token keep failing, and are held...
    failing = [(await refused_login(solewatch, "356307042499999", wrong(stale), seq=n))[0] for n in range(4)]

    # ...while the NAT's 150 good devices all reconnect at once.
    async def reconnect(imei: str):
        client = await solewatch.device()
        ack = await client.login(imei, tokens[imei])
        return client, ack.status

    with capture_logs() as logs:
        results = await asyncio.gather(*(reconnect(imei) for imei in imeis))

    assert [status for _, status in results] == [0] * len(imeis)
    assert not [line for line in logs if line["event"] == "login_refused"]
    for client, _ in results:
        await client.close()
    for client in failing:
        await client.close()


@pytest.mark.parametrize(
    "solewatch_settings",
    [{"device_login_backoff": 0.001, "device_login_backoff_max": 0.01}],
    indirect=True,
    ids=["tiny holds"],
)
async def test_a_guessing_client_gets_few_log_lines_each_with_the_count(solewatch):
    token = await solewatch.register(IMEI)
    with capture_logs() as logs:
        for seq in range(40):
            client = await solewatch.device()
            await client.send(Login(seq, IMEI, 0x0102, wrong(token)))
            assert [(type(f), f.status) for f in await client.frames_until_closed()] == [(LoginAck, 2)]

    # Every refusal is answered; the log keeps the first three, then the 4th, 8th, 16th and 32nd.
    assert [line["consecutive_failures"] for line in logs if line["event"] == "login_refused"] == [
        1,
        2,
        3,
        4,
        8,
        16,
        32,
    ]
