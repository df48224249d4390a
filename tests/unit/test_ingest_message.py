"""The ingest message: a listener's batch on the bus, read back by the storage writer."""

from __future__ import annotations

import base64

import pytest

from shared.protocols.xsole import Alarm, CommandResult, Heartbeat, Position, encode
from shared.store.batch import IngestBatch
from shared.store.ingest_message import ingest_batch, ingest_message
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
    telemetry = IngestBatch.from_events(RECORDS)

    read = ingest_batch(ingest_message(telemetry))

    assert read.tables == telemetry.tables
    assert read.devices == telemetry.devices
    assert read.alarms == telemetry.alarms
    assert read.frames == 4


HEARTBEAT = base64.b64encode(encode(Heartbeat(6, 1_799_999_991, 79, -60))).decode()
ALARM = base64.b64encode(encode(Alarm(7, 1_799_999_992, 1, 0, 0, 60, 1))).decode()


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"{}",
        b'{"devices": {"1": [10, "356307042441013"]}, "runs": [[1, 3.0, "%s"]], "alarms": []}'
        % base64.b64encode(encode(Heartbeat(6, 1_799_999_991, 79, -60))[:-3]),
        b'{"devices": {"1": [10, "356307042441013"]}, "runs": [[1, 3.0, "not base64!"]], "alarms": []}',
        b'{"devices": {"1": [10, "356307042441013"]}, "runs": [[1, 3.0, "%s"]], "alarms": []}' % ALARM.encode(),
        b'{"devices": {"1": [10]}, "runs": [], "alarms": []}',
        b'{"devices": {}, "runs": [[1, 3.0, "%s"]], "alarms": []}' % HEARTBEAT.encode(),
        b'{"devices": {"1": [10, "356307042441013"]}, "runs": [], "alarms": [[1, [1, 2], 3.0]]}',
        b'{"devices": {"1": [10, "356307042441013"]}, "runs": [], "alarms": [[1, [1, 2, 3, 4, 5, 6, "x"], 3.0]]}',
        b"[[1, 2]]",
    ],
    ids=[
        "junk",
        "empty-object",
        "short-run",
        "text-in-run",
        "alarm-in-run",
        "bad-device",
        "unknown-device",
        "bad-alarm",
        "text-in-alarm",
        "a-list",
    ],
)
def test_anything_else_is_refused_as_a_poison_message(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not an ingest message"):
        ingest_batch(payload)
