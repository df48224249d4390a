"""GT06 (Concox/Jimi pendants and trackers, TCP 5023) as a sans-IO codec: docs/protocols/gt06.md."""

from shared.protocols.gt06.device import Device
from shared.protocols.gt06.session import Session

__all__ = ["Device", "Session"]
