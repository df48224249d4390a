"""The ingest message: a listener's batch on the bus, read back by the storage writer."""

from __future__ import annotations

import orjson
import pytest

from shared.protocols.xsole import Alarm, CommandResult, Heartbeat, Position
from shared.store.messages import ingest_message, ingest_telemetry, split_telemetry
from shared.store.port import FrameRecord

NOW = 1_800_000_000.5
RECORDS = [
    FrameRecord(
        1, 10, "356307042441013", Position(5, 1_799_999_990, 436163000, 70553000, 12, 150, 900, 9, 11, 80, 1), NOW
    ),
    FrameRecord(1, 10, "356307042441013", Heartbeat(6, 1_799_999_991, 79, -60), NOW),
    FrameRecord(2, 11, "356307042441021", Alarm(7, 1_799_999_992, 1, 436163000, 70553000, 60, 1), NOW + 1),
    FrameRecord(2, 11, "356307042441021", CommandResult(8, 3, 0), NOW + 1),
]


def test_a_batch_reads_back_as_it_was_sent() -> None:
    telemetry = split_telemetry(RECORDS)

    read = ingest_telemetry(ingest_message(telemetry))

    assert read.tables == telemetry.tables
    assert read.devices == telemetry.devices
    assert read.alarms == telemetry.alarms
    assert read.frames == 4


def test_the_older_list_of_frames_layout_still_reads() -> None:
    # What listeners published before batches carried rows: [device, tenant, imei, kind code, fields, received_at].
    old = orjson.dumps(
        [
            [r.device_id, r.tenant_id, r.imei, code, [*r.event], r.received_at]
            for r, code in zip(RECORDS, (0, 1, 3, 4), strict=True)
        ]
    )

    read = ingest_telemetry(old)

    assert read.tables == split_telemetry(RECORDS).tables
    assert read.alarms == split_telemetry(RECORDS).alarms


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{}",
        b'{"tables": {"positions": [[1, 2]]}, "devices": {}, "alarms": []}',
        b'{"tables": {"positions": [[1,2,3,4,5,6,7,8,9,10,11,12,"x"]]}, "devices": {}, "alarms": []}',
        b'{"tables": {"sandwiches": [[1]]}, "devices": {}, "alarms": []}',
        b'{"tables": {}, "devices": {"1": [10]}, "alarms": []}',
        b'{"tables": {}, "devices": {}, "alarms": [[1, 10, "356307042441013", [1, 2], 3.0]]}',
        b"[[1, 2]]",
    ],
    ids=[
        "junk",
        "empty-object",
        "short-row",
        "text-in-row",
        "unknown-table",
        "bad-device",
        "bad-alarm",
        "bad-old-layout",
    ],
)
def test_anything_else_is_refused_as_a_poison_message(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not an ingest message"):
        ingest_telemetry(payload)
