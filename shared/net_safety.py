"""Where solewatch may send a request to an address somebody else gave it (partner webhooks, Web Push).

The server POSTs to URLs that tenant admins and supervisors register, so in
production it must reach only public https hosts, never an address inside the
deployment (SSRF). Two checks, the same for every caller: the URL as written
(`public_url_problem`: scheme, `localhost`, IP literals), and, since any name
can resolve anywhere and change later (DNS rebinding), the addresses a name
resolves to when the connection is made (`resolved_addresses_problem`). A
name with one inside address among public ones is refused whole: which address
a client ends up on is not ours to say.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit


def is_public_address(address: str) -> bool:
    """Whether an IP address is globally routable: not loopback, private, link-local, reserved..."""
    return ipaddress.ip_address(address).is_global


def public_url_problem(url: str, *, what: str = "url") -> str | None:
    """Why a URL is refused as written for a request to the outside (not https, `localhost`, an IP
    literal that is not public), or None; `what` names it in the message. A host name passes here:
    it is checked once resolved."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        return f"the {what} must use https"
    host = parts.hostname or ""
    if not host or host == "localhost" or host.endswith(".localhost"):
        return f"the {what} must name a public host"
    try:
        public = is_public_address(host)
    except ValueError:
        return None  # a name
    return None if public else f"the {what} must name a public host"


def resolved_addresses_problem(host: str, addresses: Iterable[str]) -> str | None:
    """Why a host's resolved addresses may not be connected to (none, or any not public), or None."""
    found = list(addresses)
    if not found:
        return f"{host} resolves to no address"
    if not all(is_public_address(address) for address in found):
        return f"{host} resolves to a non-public address"
    return None
