"""AVL records of Codec 8, Codec 8 Extended and Codec 16: the data field of a packet, both ways.

A record is a timestamp (u64 milliseconds since the epoch, UTC), a priority (0 low, 1 high, 2 panic), the
GPS element (longitude and latitude i32 in 1e-7 degree, altitude i16 m, angle u16 degrees, satellites u8,
speed u16 km/h) and the IO element: the id of the IO whose change made the record (0 for a periodic one),
then the IO values grouped by size (1, 2, 4 and 8 bytes; Codec 8 Extended adds a group of variable
length values). The codecs differ only in the width of the ids and counts, as `_LAYOUTS` says.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from shared.protocols.teltonika.framing import CODEC_8, CODEC_8_EXTENDED, CODEC_16

MAX_RECORDS = 255  # the record counts are one byte


class Record(NamedTuple):
    ts_ms: int
    priority: int
    lon_e7: int
    lat_e7: int
    alt_m: int
    angle: int  # degrees, 0..360
    sats: int
    speed_kmh: int
    event_io: int  # the IO whose change made this record; 0 for a periodic record
    io: dict[int, tuple[int, int]]  # IO id -> (its size, 1, 2, 4 or 8 bytes; its value, unsigned)

    def io_value(self, io_id: int, size: int) -> int | None:
        """The value of an IO sent with the size Teltonika documents for it, else None: IO ids mean
        different things on different models, and the size tells some of them apart."""
        found = self.io.get(io_id)
        return found[1] if found is not None and found[0] == size else None


class Malformed(Exception):
    """A data field whose CRC matched but whose content does not parse (cut short, counts that disagree)."""


class _Layout(NamedTuple):
    id_format: str  # IO ids and the event IO id
    count_format: str  # the IO counts
    generation_type: bool  # Codec 16 has a byte after the event IO id
    variable_group: bool  # Codec 8 Extended has a group of variable-length values


_LAYOUTS = {
    CODEC_8: _Layout("B", "B", False, False),
    CODEC_8_EXTENDED: _Layout("H", "H", False, True),
    CODEC_16: _Layout("H", "B", True, False),
}
AVL_CODECS = frozenset(_LAYOUTS)
_GPS = struct.Struct(">QBiihHBH")
_VALUE_FORMATS = ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos

    def read(self, fmt: str) -> int:
        size = struct.calcsize(">" + fmt)
        if self.pos + size > len(self.data):
            raise Malformed(f"cut short at byte {self.pos}")
        (value,) = struct.unpack_from(">" + fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def skip(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise Malformed(f"cut short at byte {self.pos}")
        self.pos += size


def decode_records(data: bytes) -> list[Record]:
    """The records of an AVL data field (codec id through the second count). Raises Malformed."""
    layout = _LAYOUTS[data[0]]
    count = data[1]
    if count == 0 or data[-1] != count:
        raise Malformed(f"record counts {count} and {data[-1]} (they must agree, and not be 0)")
    reader = _Reader(data, 2)
    records = [_record(reader, layout) for _ in range(count)]
    if reader.pos != len(data) - 1:
        raise Malformed(f"{len(data) - 1 - reader.pos} bytes left over after {count} records")
    return records


def _record(reader: _Reader, layout: _Layout) -> Record:
    if reader.pos + _GPS.size > len(reader.data):
        raise Malformed(f"cut short at byte {reader.pos}")
    ts_ms, priority, lon, lat, alt, angle, sats, speed = _GPS.unpack_from(reader.data, reader.pos)
    reader.pos += _GPS.size
    event_io = reader.read(layout.id_format)
    if layout.generation_type:
        reader.skip(1)
    reader.read(layout.count_format)  # the total count: the groups' counts say the same
    io: dict[int, tuple[int, int]] = {}
    for size, value_format in _VALUE_FORMATS:
        for _ in range(reader.read(layout.count_format)):
            io_id = reader.read(layout.id_format)
            io[io_id] = (size, reader.read(value_format))
    if layout.variable_group:
        for _ in range(reader.read("H")):
            reader.read("H")  # id: none of the variable-length values is mapped
            reader.skip(reader.read("H"))
    return Record(ts_ms, priority, lon, lat, alt, angle, sats, speed, event_io, io)


def encode_records(codec: int, records: list[Record]) -> bytes:
    """The data field (codec id through the second count) carrying `records`."""
    if not 1 <= len(records) <= MAX_RECORDS:
        raise ValueError(f"a packet carries 1 to {MAX_RECORDS} records, not {len(records)}")
    layout = _LAYOUTS[codec]
    out = bytearray((codec, len(records)))
    for record in records:
        out += _GPS.pack(
            record.ts_ms,
            record.priority,
            record.lon_e7,
            record.lat_e7,
            record.alt_m,
            record.angle,
            record.sats,
            record.speed_kmh,
        )
        out += struct.pack(">" + layout.id_format, record.event_io)
        if layout.generation_type:
            out.append(0x07)  # "on change", the default generation type
        groups: dict[int, list[tuple[int, int]]] = {size: [] for size, _ in _VALUE_FORMATS}
        for io_id, (size, value) in record.io.items():
            groups[size].append((io_id, value))
        out += struct.pack(">" + layout.count_format, len(record.io))
        for size, value_format in _VALUE_FORMATS:
            out += struct.pack(">" + layout.count_format, len(groups[size]))
            for io_id, value in groups[size]:
                out += struct.pack(">" + layout.id_format + value_format, io_id, value)
        if layout.variable_group:
            out += b"\x00\x00"
    out.append(len(records))
    return bytes(out)
