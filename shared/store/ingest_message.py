"""An `IngestBatch` as one bus message: a listener's batch, made durable in the
storage writer's queue (the distributed mode), read back by the writer.

    {"devices": {"<id>": [tenant id, IMEI], ...},
     "runs": [[device id, received at, "<the run's frames as received, base64>"], ...],
     "alarms": [[device id, [the ALARM's fields, seq first], received at], ...]}

A run travels as the bytes the device sent, which the writer decodes again with
the protocol (`bulk.read_run`): half the size of the decoded fields in JSON,
and a C-level encoding per run on the listener, nothing per frame.
"""

from __future__ import annotations

import binascii
from functools import partial
from operator import attrgetter, itemgetter

import orjson

from shared.protocols.xsole import Alarm
from shared.protocols.xsole.bulk import read_run
from shared.store.batch import DeviceAlarm, DeviceRef, DeviceRun, IngestBatch

_base64 = partial(binascii.b2a_base64, newline=False)
_ID = attrgetter("id")
_DEVICE, _RUN, _RECEIVED = itemgetter(0), itemgetter(1), itemgetter(2)
_FRAMES = attrgetter("frames")
_TENANT_AND_IMEI = itemgetter(slice(1, None))  # of a DeviceRef


def ingest_message(batch: IngestBatch) -> bytes:
    """The bus message carrying `batch`."""
    runs, devices = batch.runs, batch.devices
    return orjson.dumps(
        {
            # Keyed by the ids as ints, which orjson writes as strings: no str() per device.
            "devices": dict(zip(devices, map(_TENANT_AND_IMEI, devices.values()), strict=True)),
            "runs": list(
                zip(
                    map(_ID, map(_DEVICE, runs)),
                    map(_RECEIVED, runs),
                    map(bytes.decode, map(_base64, map(_FRAMES, map(_RUN, runs)))),
                    strict=True,
                )
            ),
            "alarms": [(device.id, tuple(alarm), received_at) for device, alarm, received_at in batch.alarms],
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def ingest_batch(payload: bytes) -> IngestBatch:
    """The batch an ingest message carries; raises ValueError on anything else (a poison message)."""
    try:
        message = orjson.loads(payload)
        devices = {
            int(device_id): DeviceRef(int(device_id), _integer(tenant_id), _text(imei))
            for device_id, (tenant_id, imei) in message["devices"].items()
        }
        runs = tuple(
            DeviceRun(devices[device_id], read_run(binascii.a2b_base64(frames, strict_mode=True)), float(received_at))
            for device_id, received_at, frames in message["runs"]
        )
        alarms = tuple(
            DeviceAlarm(devices[device_id], Alarm(*map(_integer, fields)), float(received_at))
            for device_id, fields, received_at in message["alarms"]
        )
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
        # orjson.JSONDecodeError and binascii.Error are ValueErrors; named for the reader.
        raise ValueError(f"not an ingest message: {exc!r}") from exc
    return IngestBatch(runs, alarms)


def _integer(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


def _text(value: object) -> str:
    if type(value) is not str:
        raise TypeError(f"{value!r} is not text")
    return value
