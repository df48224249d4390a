"""Which codec speaks each tracker protocol, and what identifies a device of each (CONTRACT §10).

A tracker protocol's codec is a package `shared.protocols.<name>` exporting
`Session` (a `TrackerSession` subclass) and `Device` (a `TrackerDevice`
subclass). It is imported only when a listener port or the simulator needs
it, so a deployment runs without the packages of protocols it leaves off,
and an enabled port whose package is missing is a clear error at start-up,
not an ImportError deep in a connection.

Tests plug in a protocol of their own with `register` (and take it out
again with `unregister`).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from shared.protocols.tracker import PROTOCOLS, TrackerDevice, TrackerSession

# The identifier each protocol's devices carry: XSole, GT06 and Teltonika send a 15-digit IMEI;
# H02 and watch devices send a shorter serial number on some models. No check digit is required:
# many trackers carry serials that are not real IMEIs.
_IMEI_DIGITS = {"xsole": (15, 15), "gt06": (15, 15), "teltonika": (15, 15), "h02": (10, 15), "watch": (10, 15)}
IMEI_PATTERN_ANY = r"^[0-9]{10,15}$"  # any device's identifier, whatever its protocol
_DIGITS = re.compile(r"[0-9]+")  # ASCII digits only: \d also matches other scripts' digits


class UnknownProtocol(Exception):
    """A protocol name that is not one of PROTOCOLS (nor registered by a test)."""


class CodecMissing(Exception):
    """A protocol is known but its codec package cannot be imported."""


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    session: type[TrackerSession]
    device: type[TrackerDevice]


_registered: dict[str, Codec] = {}
_imei_digits: dict[str, tuple[int, int]] = dict(_IMEI_DIGITS)


def protocols() -> tuple[str, ...]:
    """Every protocol a device may be registered for (the contract's, then any a test registered)."""
    return PROTOCOLS + tuple(name for name in _registered if name not in PROTOCOLS)


def imei_problem(protocol: str, imei: str) -> str | None:
    """Why `imei` cannot identify a device of `protocol` (None: it can)."""
    digits = _imei_digits.get(protocol)
    if digits is None:
        return f"unknown protocol {protocol!r}: one of {', '.join(protocols())}"
    low, high = digits
    if not _DIGITS.fullmatch(imei) or not low <= len(imei) <= high:
        wanted = f"{low} digits" if low == high else f"{low} to {high} digits"
        return f"a {protocol} device's imei is {wanted}"
    return None


def codec(protocol: str) -> Codec:
    """The codec of a tracker protocol (not xsole, whose session the listener builds itself)."""
    found = _registered.get(protocol)
    if found is not None:
        return found
    if protocol not in PROTOCOLS or protocol == "xsole":
        raise UnknownProtocol(protocol)
    try:
        module = importlib.import_module(f"shared.protocols.{protocol}")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith(f"shared.protocols.{protocol}"):
            missing = (
                f"the {protocol} protocol's codec (shared/protocols/{protocol}/) is not installed;"
                f" set SOLEWATCH_{protocol.upper()}_PORT=0 to turn its port off"
            )
            raise CodecMissing(missing) from exc
        raise
    session, device = getattr(module, "Session", None), getattr(module, "Device", None)
    if not (isinstance(session, type) and issubclass(session, TrackerSession)):
        raise CodecMissing(f"shared.protocols.{protocol} exports no Session (a TrackerSession)")
    if not (isinstance(device, type) and issubclass(device, TrackerDevice)):
        raise CodecMissing(f"shared.protocols.{protocol} exports no Device (a TrackerDevice)")
    found = _registered[protocol] = Codec(protocol, session, device)
    return found


def register(
    name: str, session: type[TrackerSession], device: type[TrackerDevice], *, imei_digits: tuple[int, int] = (15, 15)
) -> None:
    """Plug in a protocol by hand (tests' fake protocols); it then registers devices and gets a port."""
    _registered[name] = Codec(name, session, device)
    _imei_digits.setdefault(name, imei_digits)


def unregister(name: str) -> None:
    _registered.pop(name, None)
    if name not in _IMEI_DIGITS:
        _imei_digits.pop(name, None)
