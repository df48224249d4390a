import time

from shared.protocols.xsole import Position
from tests.helpers.stored import count_stored


async def test_position_is_stored_then_acked(solewatch):
    device = await solewatch.logged_in_device("356307042441013")
    now = int(time.time())
    await device.send(Position(7, now, 436163000, 70553000, 12, 140, 2705, 9, 8, 87, 1))
    assert await device.recv_acks(1) == {7: 0}
    found = await solewatch.store.device_by_imei("356307042441013")
    assert (await count_stored(solewatch.store, found.id))["positions"] == 1
