"""compose/haproxy.cfg run by the real HAProxy (Debian's package) on this machine, with no Docker.

The shipped configuration runs as it is but for its addresses (`local_config`):
the frontends bind free ports on 127.0.0.1, and Docker's embedded DNS (which
resolves a service's name to its replicas' addresses) is replaced by
`StandInDns`, a DNS server in this process whose records a test sets and
changes. Each replica of a service gets a loopback address of its own
(127.0.0.2, 127.0.0.3...; Linux routes all of 127/8 to `lo`) and every replica
listens on the same ports, as containers do; `local_config` maps the
configuration's service ports (8000 HTTP, 9000 devices) to the test's.

`haproxy -n` lowers the global `maxconn`, whose 100,000 connections need more
file descriptors than a process may open here (HAProxy refuses to start).

Used by bench/failover.py and the tests (tests/e2e/test_haproxy.py, through tests/harness/haproxy.py).
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import yaml

from bench.common import TRACKER_PORTS_OFF
from bench.servers import ServerProcess, answers, free_port

# A checkout's compose/: the wheel does not carry it, so what reads these runs from a checkout.
ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CFG = ROOT / "compose" / "haproxy.cfg"
COMPOSE_FILE = ROOT / "compose" / "compose.yml"
# The ports compose/haproxy.cfg names: its frontends', and the services' behind it.
FRONTEND_PORTS = {"http": 8000, "devices": 9000, "health": 8405}
SERVICE_HTTP_PORT, SERVICE_DEVICE_PORT = 8000, 9000
# HAProxy's limit here (haproxy -n): the machine's 20,000 descriptors, two per proxied connection.
LOCAL_MAXCONN = 8000


def haproxy_installed() -> bool:
    return shutil.which("haproxy") is not None


class StandInDns:
    """A UDP DNS server answering A queries from `records` (name -> addresses), NXDOMAIN for other names.

    Like Docker's: a service with no replica does not resolve; a name that does
    resolve has no AAAA records.
    """

    def __init__(self, records: Mapping[str, list[str]] | None = None) -> None:
        self.records: dict[str, list[str]] = dict(records or {})
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stand-in-dns", daemon=True)

    def start(self) -> StandInDns:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                wire, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self._sock.sendto(self.answer(wire), peer)
            except Exception:  # a malformed query: no answer, as a real server may do
                continue

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        question = query.question[0]
        addresses = self.records.get(question.name.to_text(omit_final_dot=True).lower())
        if not addresses:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 1, dns.rdataclass.IN, dns.rdatatype.A, addresses)
            )
        return response.to_wire()


def _replace(text: str, pattern: str, replacement: str, *, at_least: int = 1) -> str:
    """re.sub that insists the configuration still has what it rewrites, so a test never silently tests less."""
    text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count >= at_least, f"compose/haproxy.cfg has no {pattern!r} any more: update bench/haproxy.py"
    return text


def local_config(
    text: str, *, ports: Mapping[str, int], nameserver: str, service_http_port: int, service_device_port: int
) -> str:
    """The configuration `text` with only its addresses moved to this machine (see the module's docstring)."""
    for frontend, port in FRONTEND_PORTS.items():
        text = _replace(text, rf"^(\s*bind\s+):{port}\b", rf"\g<1>127.0.0.1:{ports[frontend]}")
    text = _replace(text, r"^(\s*nameserver\s+\S+\s+)127\.0\.0\.11:53\b", rf"\g<1>{nameserver}")
    text = _replace(
        text,
        rf"^(\s*server-template\s+\S+\s+\d+\s+[\w-]+):{SERVICE_HTTP_PORT}\b",
        rf"\g<1>:{service_http_port}",
        at_least=3,
    )
    text = _replace(
        text, rf"^(\s*server-template\s+\S+\s+\d+\s+[\w-]+):{SERVICE_DEVICE_PORT}\b", rf"\g<1>:{service_device_port}"
    )
    text = _replace(text, rf"(\bcheck\s+port\s+){SERVICE_HTTP_PORT}\b", rf"\g<1>{service_http_port}")
    return with_mounts(text)


def with_mounts(text: str) -> str:
    """`text` with the paths compose.yml mounts into the proxy's container (its error files) moved to
    the repository's files, as the container sees them."""
    volumes = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["proxy"]["volumes"]
    for spec in volumes:
        source, target = spec.split(":")[:2]
        if Path(target).name != "haproxy.cfg":
            text = text.replace(target.rstrip("/") + "/", str((COMPOSE_FILE.parent / source).resolve()) + "/")
    return text


@dataclass
class LocalProxy:
    """A running HAProxy on compose/haproxy.cfg (or `source`), its stand-in DNS and its ports."""

    directory: Path
    dns: StandInDns
    ports: dict[str, int] = field(default_factory=dict)
    service_http_port: int = 0
    service_device_port: int = 0
    process: ServerProcess | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def device_port(self) -> int:
        return self.ports["devices"]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.dns.stop()


def start_proxy(
    directory: Path,
    records: Mapping[str, list[str]],
    *,
    source: str | None = None,
    edit: Mapping[str, str] | None = None,
) -> LocalProxy:
    """HAProxy on `source` (default: compose/haproxy.cfg's text) made local, once it answers its health URI.

    `edit` maps exact lines (stripped) to replacements, for the rare test that
    must change more than addresses (each must be present exactly once).
    """
    dns_server = StandInDns(records).start()
    proxy = LocalProxy(
        directory,
        dns_server,
        ports={name: free_port() for name in FRONTEND_PORTS},
        service_http_port=free_port(),
        service_device_port=free_port(),
    )
    text = local_config(
        source if source is not None else HAPROXY_CFG.read_text(),
        ports=proxy.ports,
        nameserver=dns_server.address,
        service_http_port=proxy.service_http_port,
        service_device_port=proxy.service_device_port,
    )
    for line, replacement in (edit or {}).items():
        lines = [i for i, raw in enumerate(text.splitlines()) if raw.strip() == line]
        assert len(lines) == 1, f"{line!r} is not once in the configuration"
        text = text.replace(line, replacement)
    config = directory / "haproxy.cfg"
    config.write_text(text)
    health = proxy.ports["health"]
    proxy.process = ServerProcess(
        "haproxy",
        ["haproxy", "-db", "-n", str(LOCAL_MAXCONN), "-f", str(config)],
        url=proxy.http_url,
        ready=lambda: answers(
            health, b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", b"HTTP/1.1 200"
        ),
        log_path=directory / "haproxy.log",
    )
    try:
        proxy.process.start()
    except Exception:
        dns_server.stop()
        raise
    return proxy


def http_ready(address: str, port: int) -> bool:
    """True when http://address:port/readyz answers 200."""
    connection = http.client.HTTPConnection(address, port, timeout=0.5)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class Replica(ServerProcess):
    """One solewatch service process on its own loopback address, as a replica container would be."""

    def __init__(
        self,
        service: str,
        address: str,
        *,
        http_port: int,
        device_port: int,
        data_dir: Path,
        log_path: Path,
        env: Mapping[str, str],
    ) -> None:
        self.address = address
        self.http_port = http_port
        super().__init__(
            f"solewatch {service}@{address}",
            [sys.executable, "-m", "services.cli", service],
            url=f"http://{address}:{http_port}",
            ready=lambda: http_ready(address, http_port),
            log_path=log_path,
            env={
                **TRACKER_PORTS_OFF,
                **env,
                "SOLEWATCH_BIND": address,
                "SOLEWATCH_HTTP_PORT": str(http_port),
                "SOLEWATCH_LISTENER_PORT": str(device_port),
                "SOLEWATCH_DATA_DIR": str(data_dir),
            },
        )

    def kill(self) -> None:
        """SIGKILL: the process dies as a crashed container would, without closing anything itself."""
        proc = self._proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def metric(self, name: str) -> float:
        """A sample without labels from the replica's /metrics."""
        connection = http.client.HTTPConnection(self.address, self.http_port, timeout=5)
        try:
            connection.request("GET", "/metrics")
            body = connection.getresponse().read().decode()
        finally:
            connection.close()
        match = re.search(rf"^{re.escape(name)} (\S+)$", body, flags=re.MULTILINE)
        assert match, f"{name} not in {self.name}'s /metrics"
        return float(match.group(1))
