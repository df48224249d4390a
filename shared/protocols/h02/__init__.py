"""H02 (many cheap trackers, TCP 5013) as sans-IO code: the server's `Session` and a device's `Device`.

docs/protocols/h02.md describes the protocol as solewatch speaks it.
"""

from shared.protocols.h02.device import Device
from shared.protocols.h02.session import Session

__all__ = ["Device", "Session"]
