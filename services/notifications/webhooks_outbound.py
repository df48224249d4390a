"""How a webhook leaves solewatch (CONTRACT §7): where it may go, how it is signed, one attempt.

solewatch POSTs to whatever URL a tenant admin registered, so in production
(`SOLEWATCH_ENVIRONMENT=production`) it must only reach public https hosts,
never an address inside the deployment (SSRF; the rules are shared/net_safety.py's,
the same as Web Push's). The API refuses what it can see
at registration (`url_problem`, `resolved_problem`); a name can still resolve
elsewhere later (DNS rebinding), so each attempt resolves the host itself,
checks every address, and connects to the checked address (TLS still verifies
the name). Redirects are never followed, bodies are read up to a small cap and
the whole attempt has one deadline, so a hostile or hung receiver costs at most
that deadline and a few kilobytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from shared.net_safety import public_url_problem, resolved_addresses_problem

ATTEMPT_TIMEOUT_S = 10.0  # §7: a 2xx within 10 s is success
BODY_CAP = 4096  # bytes of a receiver's answer read, at most (kept only in errors)
FIRST_RETRY_MAX_S = 30.0
RETRY_MAX_S = 3600.0


class DestinationRefused(Exception):
    """The URL may not be posted to (production: not https, or not a public address)."""


def url_problem(url: str, *, production: bool) -> str | None:
    """Why a webhook URL is refused as written, or None. Names are checked once resolved."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError:
        return "the url is malformed"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the url must be http(s) with a host"
    if not production:
        return None  # local receivers on plain http and loopback: development and tests
    return public_url_problem(url)


async def public_addresses(host: str, port: int) -> list[str]:
    """The host's addresses, all public; DestinationRefused when it has a non-public one or none."""
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DestinationRefused(f"{host} does not resolve: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    problem = resolved_addresses_problem(host, addresses)
    if problem is not None:
        raise DestinationRefused(problem)
    return addresses


async def resolved_problem(url: str) -> str | None:
    """Why production refuses the URL's host as it resolves now, or None (an unknown name passes:
    it is checked again at every attempt)."""
    parts = urlsplit(url)
    try:
        await public_addresses(parts.hostname or "", parts.port or 443)
    except DestinationRefused as exc:
        return None if "does not resolve" in str(exc) else str(exc)
    return None


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Solewatch-Signature header: HMAC-SHA256 over "<t>.<raw body>" keyed by the secret's UTF-8 bytes."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def retry_delay(event_id: str, attempts: int, *, first_max: float = FIRST_RETRY_MAX_S) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: at most `first_max` (30 s) after the
    first, then at most doubling, never above an hour. The jitter is drawn from the event id, so a
    delivery's schedule is the same in every process while deliveries failing together spread out."""
    rng = random.Random(event_id)
    delay = rng.uniform(first_max / 2, first_max)
    for _ in range(1, attempts):
        delay = min(RETRY_MAX_S, delay * rng.uniform(1.5, 2.0))
    return delay


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: int | None  # the HTTP status, None when none came
    error: str | None  # None on success

    @property
    def delivered(self) -> bool:
        return self.error is None


def new_client() -> httpx.AsyncClient:
    """The client attempts go through: no redirects, no proxies from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(ATTEMPT_TIMEOUT_S),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
    )


async def _pinned(url: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL rewritten to a checked public address, with the Host header and TLS name of the original."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = (await public_addresses(host, port))[0]
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    headers = {"Host": parts.netloc.rpartition("@")[2]}
    return urlunsplit(parts._replace(netloc=netloc)), headers, {"sni_hostname": host}


async def attempt(
    client: httpx.AsyncClient, *, url: str, secret: str, event_id: str, body: bytes, now: int, production: bool
) -> AttemptResult:
    """POST the event once; never raises for anything the receiver or the network does."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "solewatch-webhooks",
        "Solewatch-Event-Id": event_id,
        "Solewatch-Signature": signature(secret, now, body),
    }
    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT_S):  # one deadline for the whole attempt, slow drips included
            target, extensions = url, dict[str, str]()
            if production:
                problem = url_problem(url, production=True)
                if problem is not None:
                    raise DestinationRefused(problem)
                target, host_header, extensions = await _pinned(url)
                headers |= host_header
            request = client.build_request("POST", target, content=body, headers=headers, extensions=extensions)
            response = await client.send(request, stream=True)
            try:
                answer = await _read_capped(response)
            finally:
                await response.aclose()
    except TimeoutError:
        return AttemptResult(None, f"no answer within {ATTEMPT_TIMEOUT_S:g} s")
    except DestinationRefused as exc:
        return AttemptResult(None, f"refused: {exc}")
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # network, protocol, or a URL httpx refuses
        return AttemptResult(None, f"{type(exc).__name__}: {exc}"[:300])
    if 200 <= response.status_code < 300:
        return AttemptResult(response.status_code, None)
    if response.is_redirect:
        return AttemptResult(response.status_code, f"HTTP {response.status_code}: redirects are not followed")
    snippet = answer[:200].decode("utf-8", "replace")
    return AttemptResult(response.status_code, f"HTTP {response.status_code}: {snippet}".strip())


async def _read_capped(response: httpx.Response) -> bytes:
    """At most BODY_CAP bytes of the answer; the rest is left unread (the connection is then closed)."""
    kept = bytearray()
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= BODY_CAP:
            break
    return bytes(kept[:BODY_CAP])
