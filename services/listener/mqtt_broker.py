"""The MQTT broker as the listener sees it: its address, the topic scheme, subscription results."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from shared.config import Settings


class Topics:
    """The topic scheme for one set of settings (compared on reload)."""

    def __init__(self, settings: Settings):
        self.prefix = settings.mqtt_topic_prefix.rstrip("/")
        self.group = settings.mqtt_shared_group
        up = f"{self.prefix}/+/up"
        self.subscription = f"$share/{self.group}/{up}" if self.group else up
        self._head, self._tail = f"{self.prefix}/", "/up"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Topics) and (self.prefix, self.group) == (other.prefix, other.group)

    def __hash__(self) -> int:
        return hash((self.prefix, self.group))

    def up(self, imei: str) -> str:
        return f"{self.prefix}/{imei}/up"

    def down(self, imei: str) -> str:
        return f"{self.prefix}/{imei}/down"

    def imei(self, topic: str) -> str | None:
        if not (topic.startswith(self._head) and topic.endswith(self._tail)):
            return None
        imei = topic[len(self._head) : -len(self._tail)]
        return imei if len(imei) == 15 and imei.isascii() and imei.isdigit() else None


def broker_address(settings: Settings) -> tuple[str, int, str | None, str | None, bool]:
    """host, port, username, password, TLS from `mqtt[s]://[user:password@]host[:port]`."""
    if not settings.mqtt_url:
        raise ValueError("the MQTT ingest needs SOLEWATCH_MQTT_URL")
    url = urlsplit(settings.mqtt_url)
    if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not url.hostname:
        raise ValueError("SOLEWATCH_MQTT_URL must look like mqtt://host:1883 or mqtts://user:password@host:8883")
    tls = url.scheme in ("mqtts", "ssl")
    return (
        url.hostname,
        url.port or (8883 if tls else 1883),
        unquote(url.username) if url.username else None,
        unquote(url.password) if url.password else None,
        tls,
    )


def refused(code: Any) -> bool:
    # paho gives ReasonCodes (MQTT 5 style, also for 3.1.1) or ints; 0x80 and up is a failure.
    return bool(getattr(code, "is_failure", False)) or (isinstance(code, int) and code >= 0x80)
