"""Client addresses as solewatch counts them (login throttling, connection caps, Socket.IO handshakes)."""

from __future__ import annotations

import ipaddress


def address_scope(address: str) -> str:
    """The client address as limits count it: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64
    (one host usually holds a whole /64), anything else (a Unix socket) verbatim."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
