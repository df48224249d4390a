"""The "watch" protocol of 3G/4G SOS watches (SeTracker/Beesure and their many relabels), TCP 5093.

The registry imports `Session` (the server's side) and `Device` (a watch's side).
"""

from shared.protocols.watch.device import Device
from shared.protocols.watch.session import Session

__all__ = ["Device", "Session"]
