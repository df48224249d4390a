"""The group committer hands the store an immutable batch and ACKs what it held."""

from __future__ import annotations

import dataclasses

import pytest

from services.listener.committer import GroupCommitter
from shared.protocols.xsole import AckStatus, Alarm, Heartbeat, encode
from shared.protocols.xsole.bulk import read_run
from shared.store.batch import DeviceRef, IngestBatch

NOW = 1_800_000_000.0
DEVICE = DeviceRef(1, 10, "356307042441013")


class Sink:
    def __init__(self) -> None:
        self.acks: list[tuple[int, AckStatus]] = []

    def queue_acks(self, seqs: list[int], status: AckStatus) -> None:
        self.acks += [(seq, status) for seq in seqs]

    def flush_acks(self) -> None:
        pass

    def resume_if_possible(self) -> None:
        pass


async def test_runs_and_events_are_sealed_into_one_immutable_batch_then_acked() -> None:
    sealed: list[IngestBatch] = []

    async def make_durable(batch: IngestBatch) -> None:
        sealed.append(batch)

    committer = GroupCommitter(make_durable, max_batch=100, max_pending=100)
    sink = Sink()
    run = read_run(b"".join(encode(Heartbeat(seq, int(NOW), 80, -60)) for seq in (1, 2)))
    alarm = Alarm(3, int(NOW), 1, 0, 0, 60, 0)

    committer.add_run(sink, DEVICE, run, NOW)
    committer.add_event(sink, DEVICE, alarm, NOW)
    committer.add_event(sink, DEVICE, Heartbeat(4, int(NOW), 79, -60), NOW + 1)
    await committer.start()
    await committer.flush()
    await committer.close()

    [batch] = sealed
    assert isinstance(batch.runs, tuple) and isinstance(batch.alarms, tuple)
    assert [device_run.run.seqs for device_run in batch.runs] == [[1, 2], [4]]
    assert [device_alarm.alarm for device_alarm in batch.alarms] == [alarm]
    assert batch.frames == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.runs = ()  # type: ignore[misc]  # what the test checks: it is refused
    assert sink.acks == [(seq, AckStatus.STORED) for seq in (1, 2, 3, 4)]
