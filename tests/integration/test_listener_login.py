"""Contract §1 rule 1 (LOGIN first) and the session around it, over real TCP.

Also the downlink COMMAND round trip and a device reconnecting, which both
hinge on which connection is the device's logged-in one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

from shared.protocols.xsole import Ack, Command, CommandResult, Login, LoginAck
from tests.helpers.stored import count_stored

IMEI = "356307042441013"
OTHER_IMEI = "356307042441021"


async def _stored_positions(solewatch, imei: str) -> int:
    device = await solewatch.store.device_by_imei(imei)
    return (await count_stored(solewatch.store, device.id))["positions"]


# -- rejected and accepted logins ------------------------------------------------------


async def test_unknown_imei_gets_login_ack_1_then_close(solewatch):
    device = await solewatch.device()
    await device.send(Login(0x1234, IMEI, 0x0102, bytes(16)))

    frames = await device.frames_until_closed()

    assert [(type(f), f.seq, f.status) for f in frames] == [(LoginAck, 0x1234, 1)]


async def test_wrong_token_gets_login_ack_2_then_close_and_nothing_after_it_is_stored(solewatch):
    token = await solewatch.register(IMEI)
    wrong = bytes(b ^ 0xFF for b in token)
    device = await solewatch.device()
    # A position glued behind the refused LOGIN must not slip in.
    await device.send(Login(5, IMEI, 0x0102, wrong), device.position())

    frames = await device.frames_until_closed()

    assert [(type(f), f.seq, f.status) for f in frames] == [(LoginAck, 5, 2)]
    assert await _stored_positions(solewatch, IMEI) == 0


async def test_disabled_device_gets_login_ack_3_then_close(solewatch):
    token = await solewatch.register(IMEI)
    with sqlite3.connect(solewatch.settings.sqlite_path) as db:
        db.execute("UPDATE devices SET enabled = 0 WHERE imei = ?", (IMEI,))
    db.close()
    device = await solewatch.device()
    await device.send(Login(9, IMEI, 0x0102, token))

    frames = await device.frames_until_closed()

    assert [(type(f), f.seq, f.status) for f in frames] == [(LoginAck, 9, 3)]


async def test_accepted_login_echoes_seq_and_gives_server_time(solewatch):
    token = await solewatch.register(IMEI)
    device = await solewatch.device()
    await device.send(Login(0xBEEF, IMEI, 0x0102, token))

    reply = await device.recv()

    assert isinstance(reply, LoginAck)
    assert (reply.seq, reply.status) == (0xBEEF, 0)
    assert abs(reply.server_time - time.time()) < 5
    # ...and the session is open for telemetry.
    position = device.position()
    await device.send(position)
    assert await device.recv_acks(1) == {position.seq: 0}
    await device.close()


async def test_frame_before_login_gets_ack_3_with_its_seq_then_close(solewatch):
    await solewatch.register(IMEI)
    device = await solewatch.device()
    heartbeat = device.heartbeat()

    await device.send(heartbeat)

    frames = await device.frames_until_closed()
    assert frames == [Ack(heartbeat.seq, 3)]


# -- one device, one connection --------------------------------------------------------------


async def test_second_login_with_the_same_imei_closes_the_first_connection(solewatch):
    token = await solewatch.register(IMEI)
    first = await solewatch.device()
    assert (await first.login(IMEI, token)).status == 0
    second = await solewatch.device()
    assert (await second.login(IMEI, token)).status == 0

    assert await first.closed_by_server()
    position = second.position()
    await second.send(position)
    assert await second.recv_acks(1) == {position.seq: 0}
    await second.close()


async def test_other_devices_are_not_disturbed_by_a_reconnect(solewatch):
    other = await solewatch.logged_in_device(OTHER_IMEI)
    token = await solewatch.register(IMEI)
    for _ in range(2):
        device = await solewatch.device()
        assert (await device.login(IMEI, token)).status == 0

    position = other.position()
    await other.send(position)
    assert await other.recv_acks(1) == {position.seq: 0}
    await other.close()


# -- downlink commands -------------------------------------------------------------------------


async def _answer_command(device, command: Command, status: int = 0) -> None:
    result = CommandResult(device.next_seq(), command.seq, status)
    await device.send(result)
    assert await device.recv_acks(1) == {result.seq: 0}


async def test_command_reaches_a_connected_device_and_its_result_is_recorded(solewatch):
    device = await solewatch.logged_in_device(IMEI)
    device_id = (await solewatch.store.device_by_imei(IMEI)).id

    command_id = await solewatch.listener.queue_command(device_id=device_id, cmd=1)

    command = await device.recv()
    assert isinstance(command, Command) and (command.cmd, command.args) == (1, b"")
    assert (await solewatch.store.command(command_id)).status == "sent"
    await _answer_command(device, command)
    assert (await solewatch.store.command(command_id)).status == "done"
    await device.close()


async def test_command_queued_while_offline_is_delivered_right_after_login(solewatch):
    token = await solewatch.register(IMEI)
    device_id = (await solewatch.store.device_by_imei(IMEI)).id
    command_id = await solewatch.listener.queue_command(device_id=device_id, cmd=3, args=b"\x02")
    assert (await solewatch.store.command(command_id)).status == "pending"

    device = await solewatch.device()
    assert (await device.login(IMEI, token)).status == 0
    command = await device.recv()

    assert isinstance(command, Command) and (command.cmd, command.args) == (3, b"\x02")
    await _answer_command(device, command, status=2)
    assert (await solewatch.store.command(command_id)).status == "unsupported"
    await device.close()


async def test_command_result_completes_only_the_command_it_answers(solewatch):
    token = await solewatch.register(IMEI)
    device_id = (await solewatch.store.device_by_imei(IMEI)).id
    first = await solewatch.device()
    assert (await first.login(IMEI, token)).status == 0
    lost_id = await solewatch.listener.queue_command(device_id=device_id, cmd=1)
    assert isinstance(await first.recv(), Command)
    await first.close()  # the connection drops before the insole answers
    await _wait_until_offline(solewatch, IMEI)

    second = await solewatch.device()
    assert (await second.login(IMEI, token)).status == 0
    resent = await second.recv()  # the unanswered command comes again, same seq
    assert isinstance(resent, Command) and resent.cmd == 1
    answered_id = await solewatch.listener.queue_command(device_id=device_id, cmd=3)
    command = await second.recv()
    assert isinstance(command, Command) and command.cmd == 3 and command.seq != resent.seq
    await _answer_command(second, command)

    assert (await solewatch.store.command(answered_id)).status == "done"
    assert (await solewatch.store.command(lost_id)).status == "sent"
    await _answer_command(second, resent)
    assert (await solewatch.store.command(lost_id)).status == "done"
    await second.close()


async def _wait_until_offline(solewatch, imei: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while imei in solewatch.listener.online:
        assert time.monotonic() < deadline, "the listener never noticed the closed connection"
        await asyncio.sleep(0.01)
