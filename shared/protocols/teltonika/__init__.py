"""Teltonika Codec 8 / 8 Extended over TCP (port 5027), sans-IO: see docs/protocols/teltonika.md.

`Session` is the server's side of one connection (a `TrackerSession`), `Device` a tracker's side (a
`TrackerDevice`) for the simulator, the tests and the benchmark.
"""

from shared.protocols.teltonika.device import Device
from shared.protocols.teltonika.session import Session

__all__ = ["Device", "Session"]
