"""GET /api/v1/devices/{imei}/export (CONTRACT §8): everything stored about a worker, as one zip.

The worker (through an admin) asks for their data; a device may hold millions
of frames, so the zip is made while it is sent: each file's rows are read from
the store a page at a time and compressed into a sink the response drains
after every page. Memory stays that of one page whatever the device holds
(bench: `solewatch bench export`). zipfile writes to a stream it cannot seek
with data descriptors after each member, which every unzip tool reads.

The read is recorded (`export.read`) before the first byte goes: an export
the store cannot record fails (503) rather than going unlogged.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from services.api.deps import AdminPrincipal, ContextDep
from services.api.devices import Imei, device_view, tenant_device
from services.api.history import activity_view, heartbeat_view
from services.authn.models import ErrorOut
from services.context import ServiceContext
from shared.alerts import alert_to_api, iso_utc
from shared.position_view import position_view
from shared.store import ApiStore, Device
from shared.webhook_events import command_to_api

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

PAGE = 1000  # rows read (and compressed) at a time


class _Sink(io.RawIOBase):
    """Where zipfile writes; the response takes what was written after each page."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        taken, self._chunks = b"".join(self._chunks), []
        return taken


async def _frames(read: Callable[..., Awaitable[list[Any]]], device_id: int) -> AsyncIterator[list[Any]]:
    """Every frame of one kind, oldest first, a page at a time."""
    after: tuple[int, int] | None = None
    while True:
        rows = await read(device_id, after=after, limit=PAGE)
        if rows:
            yield rows
        if len(rows) < PAGE:
            return
        after = (rows[-1].ts, rows[-1].seq)


def _with_seq(view: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """The REST shape of a frame and its sequence number (with ts, what tells two frames apart)."""
    return lambda row: {**view(row), "seq": row.seq}


_POSITION_COLUMNS = ("ts", "seq", "lat", "lon", "alt", "speed", "course", "sats", "hdop", "battery", "buffered")
_ACTIVITY_COLUMNS = ("ts", "seq", "steps", "state", "cadence", "battery")
_HEARTBEAT_COLUMNS = ("ts", "seq", "battery", "rssi")


def _csv_lines(rows: Iterable[dict[str, Any]], columns: Iterable[str]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    for row in rows:
        writer.writerow(row)
    return text.getvalue().encode()


def _csv_header(columns: Iterable[str]) -> bytes:
    return (",".join(columns) + "\n").encode()


async def _alerts(device: Device, store: ApiStore) -> AsyncIterator[list[dict[str, Any]]]:
    """The device's alerts with their timelines, newest first, a page at a time."""
    before = None
    while True:
        alerts = await store.alerts(device.tenant_id, imei=device.imei, before_id=before, limit=PAGE)
        page = []
        for alert in alerts:
            timeline = await store.alert_timeline(device.tenant_id, alert.id)
            lines = [
                {"at": iso_utc(e.at, millis=True), "action": e.action, "actor": e.actor, "detail": e.detail}
                for e in timeline
            ]
            page.append(alert_to_api(alert) | {"timeline": lines})
        yield page
        if len(alerts) < PAGE:
            return
        before = alerts[-1].id


async def _commands(device: Device, store: ApiStore) -> AsyncIterator[list[dict[str, Any]]]:
    """The device's commands, newest first, a page at a time."""
    before, now = None, time.time()
    while True:
        commands = await store.device_commands(device.id, before_id=before, limit=PAGE)
        yield [command_to_api(command, now) for command in commands]
        if len(commands) < PAGE:
            return
        before = commands[-1].id


def _every_position(context: ServiceContext) -> Callable[..., Awaitable[list[Any]]]:
    """Positions hidden by the location visibility too: this export is an admin's, of the worker's own data
    (CONTRACT §8 filters exports to non-admins: the `export=csv|geojson` reads of history.py)."""

    async def read(device_id: int, *, after: tuple[int, int] | None, limit: int) -> list[Any]:
        return await context.positions.everything(device_id, after=after, limit=limit)

    return read


async def _zip(context: ServiceContext, device: Device) -> AsyncIterator[bytes]:
    sink = _Sink()
    store = context.store
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        settings = (await store.device_settings(device.id)).as_dict()
        shown = await device_view(context, device, whole=True)
        about = {**shown, "settings": settings, "exported_at": iso_utc(time.time())}
        archive.writestr("device.json", orjson.dumps(about, option=orjson.OPT_INDENT_2))
        yield sink.take()

        for name, read, view, columns in (
            ("positions.csv", _every_position(context), position_view, _POSITION_COLUMNS),
            ("activity.csv", store.activities, activity_view, _ACTIVITY_COLUMNS),
            ("heartbeats.csv", store.heartbeats, heartbeat_view, _HEARTBEAT_COLUMNS),
        ):
            as_row = _with_seq(view)
            with archive.open(name, "w", force_zip64=True) as member:
                member.write(_csv_header(columns))
                frames: AsyncIterator[list[Any]] = _frames(read, device.id)
                async for rows in frames:
                    member.write(_csv_lines(map(as_row, rows), columns))
                    yield sink.take()
            yield sink.take()

        for name, pages in (("alerts.json", _alerts(device, store)), ("commands.json", _commands(device, store))):
            with archive.open(name, "w", force_zip64=True) as member:
                member.write(b"[")
                separator = b""
                async for items in pages:
                    for item in items:
                        member.write(separator + orjson.dumps(item))
                        separator = b",\n"
                    yield sink.take()
                member.write(b"]")
    yield sink.take()  # the central directory


@router.get(
    "/{imei}/export",
    summary="Everything stored about a device's worker, as a zip (admin; recorded in the audit log)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "device.json, positions.csv, activity.csv, heartbeats.csv, alerts.json (with timelines)"
            " and commands.json, made while sent",
        },
        404: {"model": ErrorOut, "description": "no such device in the caller's tenant"},
    },
)
async def export_device(imei: Imei, context: ContextDep, principal: AdminPrincipal) -> StreamingResponse:
    device = await tenant_device(context, principal.tenant_id, imei)
    await context.store.record_audit(principal.audit("export.read", "device", device.imei, format="zip"))
    day = time.strftime("%Y%m%d", time.gmtime())
    return StreamingResponse(
        _zip(context, device),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="solewatch-{device.imei}-{day}.zip"'},
    )
