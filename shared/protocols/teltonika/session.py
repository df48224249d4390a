"""One Teltonika connection, server side: what the listener's ingest step drives (see tracker.py).

- The IMEI preamble logs in; `login_reply` answers 0x01 (accepted) or 0x00 (refused).
- An AVL data packet (Codec 8, 8 Extended or 16) gives each record's events (mapping.py); its reply, the
  number of records as a u32, goes out once they are all durable. A device that gets no reply (or a
  different number) sends the same records again.
- A Codec 12 answer from the device is the `CommandResult` of the oldest command sent and not answered.
- A Codec 13 packet (serial port text with a timestamp) is taken without events; it wants no reply.
- A packet with a bad CRC, a form that does not parse, or a codec we do not decode (GH3000's Codec 7,
  Codec 14 and 15) is counted in `bad_frames` and dropped without a reply.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import ClassVar

from shared.protocols.teltonika import codec12
from shared.protocols.teltonika.avl import AVL_CODECS, Malformed, decode_records
from shared.protocols.teltonika.framing import CODEC_12, CODEC_13, BadChecksum, DataPacket, ImeiPacket, Ping, cut
from shared.protocols.teltonika.mapping import record_events
from shared.protocols.tracker import Decoded, TrackerSession
from shared.protocols.xsole.constants import CommandStatus
from shared.protocols.xsole.messages import CommandResult, DeviceEvent

_RECORDS_ACCEPTED = struct.Struct(">I")
_NOTHING = Decoded()


class Session(TrackerSession):
    protocol: ClassVar[str] = "teltonika"

    def __init__(self) -> None:
        super().__init__()
        self._commands_sent: deque[int] = deque()  # the seqs of commands not answered yet, oldest first

    def _next_packet(self) -> Decoded | None:
        while True:
            packet, skipped = cut(self._buffer)
            self.skipped_bytes += skipped
            if packet is None:
                return None
            if isinstance(packet, Ping):
                continue
            if isinstance(packet, BadChecksum):
                self._bad()
                continue
            if isinstance(packet, ImeiPacket):
                return Decoded(imei=packet.imei, login=True)
            decoded = self._decode(packet)
            if decoded is None:
                self._bad()
                continue
            return decoded

    def _decode(self, packet: DataPacket) -> Decoded | None:
        try:
            if packet.codec in AVL_CODECS:
                records = decode_records(packet.data)
                events = [event for record in records for event in record_events(record)]
                return Decoded(events=tuple(events), reply=_RECORDS_ACCEPTED.pack(len(records)))
            if packet.codec == CODEC_12:
                return Decoded(events=tuple(self._answers(codec12.decode_messages(packet.data))))
        except Malformed:
            return None
        if packet.codec == CODEC_13:
            return _NOTHING
        return None

    def _answers(self, messages: list[tuple[int, bytes]]) -> list[DeviceEvent]:
        results: list[DeviceEvent] = []
        for message_type, _text in messages:
            if message_type == codec12.TYPE_RESPONSE and self._commands_sent:
                cmd_seq = self._commands_sent.popleft()
                results.append(CommandResult(cmd_seq, cmd_seq, CommandStatus.DONE))
        return results

    def login_reply(self, packet: Decoded, *, accepted: bool) -> bytes:
        return b"\x01" if accepted else b"\x00"

    def command(self, seq: int, cmd: int, args: bytes = b"") -> bytes | None:
        text = codec12.COMMAND_TEXT.get(cmd)
        if text is None or args:
            return None
        self._commands_sent.append(seq)
        return codec12.encode_message(codec12.TYPE_COMMAND, text)
