"""solewatch's one settings model: environment, an optional file, base64 secrets.

Settings are built in each entry point (`load_settings()`) and passed down,
never read from a module-level global, so tests and SIGHUP reloads can build
fresh ones.
"""

from __future__ import annotations

import base64
import os
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_ENV = "SOLEWATCH_CONFIG_FILE"
# Settings that name a file; each may instead come base64-encoded in <NAME>_BASE64.
FILE_SETTINGS = ("tls_cert", "tls_key")


class SettingsError(ValueError):
    """The settings cannot be used as given."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SOLEWATCH_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    # Where things listen.
    bind: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    max_request_body: int = Field(
        1024 * 1024,
        ge=1,
        description="bytes an HTTP request body may have (413 above); enforced while reading, on every route",
    )
    # HTTP connections hold file descriptors the device listener shares in an all-in-one process.
    http_max_connections: int = Field(
        4096, gt=0, description="HTTP connections (WebSockets included) open at once; more are closed at once"
    )
    http_max_connections_per_address: int = Field(
        256, gt=0, description="HTTP connections open at once from one client address; raise it behind a proxy"
    )
    http_header_timeout: float = Field(
        10,
        gt=0,
        description="seconds a request's headers have to arrive, from the "
        "connection or the previous response (408, closed)",
    )
    http_body_timeout: float = Field(
        60, gt=0, description="seconds a request's whole body has to arrive once its headers have (408, closed)"
    )
    http_shutdown_timeout: int = Field(
        5,
        ge=0,
        description="seconds a stopping HTTP server waits for requests in progress (a Socket.IO long-poll is"
        " one) before cutting them",
    )
    listener_port: int = Field(9000, ge=0, le=65535)
    # The tracker protocols' TCP ports (CONTRACT §10; Traccar's defaults); 0 turns a protocol off.
    gt06_port: int = Field(5023, ge=0, le=65535, description="GT06 trackers' TCP port (0: off)")
    h02_port: int = Field(5013, ge=0, le=65535, description="H02 trackers' TCP port (0: off)")
    watch_port: int = Field(5093, ge=0, le=65535, description="3G SOS watches' TCP port (0: off)")
    teltonika_port: int = Field(5027, ge=0, le=65535, description="Teltonika Codec 8 / 8E TCP port (0: off)")

    # Embedded defaults; an URL switches that port to its server adapter.
    data_dir: Path = Path("./solewatch-data")
    mongodb_url: str | None = None
    amqp_url: str | None = None
    amqp_reconnect_interval: float = Field(
        5.0, gt=0, description="seconds between attempts to reach RabbitMQ again once the link is lost"
    )
    redis_url: str | None = None
    mqtt_url: str | None = None
    mqtt_topic_prefix: str = Field(
        "xsole", pattern=r"^[^+#]+$", description="devices publish to {prefix}/{imei}/up and read {prefix}/{imei}/down"
    )
    mqtt_shared_group: str = Field(
        "solewatch",
        pattern=r"^[^/+#]*$",
        description="shared-subscription group splitting the devices' messages between "
        "listeners (docs/mqtt.md); empty for a plain subscription",
    )

    admin_email: str | None = None
    admin_password: SecretStr | None = None

    # Authentication (services/authn). Without a JWT secret, development
    # generates one under data_dir; production refuses to start (tokens.signing_secret).
    jwt_secret: SecretStr | None = Field(None, description="HS256 key of access tokens, at least 32 characters")
    access_token_ttl: int = Field(900, gt=0, description="seconds an access token is valid")
    refresh_token_ttl: int = Field(30 * 24 * 3600, gt=0, description="seconds a refresh token stays usable")
    # Login throttling (services/authn/ratelimit.py, docs/security.md): per email and address, then per address.
    login_free_failures: int = Field(3, ge=0, description="failed logins of one email from one address before delays")
    login_first_delay: float = Field(1, gt=0, description="seconds of the first delay; each further failure doubles it")
    login_max_delay: float = Field(
        900, gt=0, description="the longest delay between two logins of one email from one address"
    )
    login_max_failures_per_address: int = Field(
        30, gt=0, description="logins not succeeding from one address per window, across emails"
    )
    login_failure_window: float = Field(3600, gt=0, description="seconds failures are remembered")
    # Partner API keys (services/authn/key_limits.py, docs/api.md): a token bucket per key,
    # shared by every API process through the cache. Signed-in users are not counted.
    api_key_rate: float = Field(10, gt=0, le=1_000_000, description="requests a second one API key may make, sustained")
    api_key_burst: int = Field(
        50, ge=1, le=1_000_000, description="requests one API key may make at once, after a quiet spell"
    )

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None
    smtp_starttls: bool = True
    smtp_timeout: float = Field(30, gt=0, description="seconds for one SMTP connection and send")
    smtp_ca_file: Path | None = Field(
        None, description="CA bundle to verify the SMTP server's certificate (system CAs otherwise)"
    )

    # Notifications: a failed send is retried notification_max_attempts times in
    # all, waiting notification_backoff seconds, doubling up to notification_backoff_max.
    notification_max_attempts: int = Field(5, ge=1)
    notification_backoff: float = Field(1.0, ge=0)
    notification_backoff_max: float = Field(16.0, ge=0)
    notification_concurrency: int = Field(20, gt=0, description="sends in progress at once, all channels together")
    notification_claim_timeout: float = Field(
        300,
        gt=0,
        description="seconds after which a notification claimed by a process that went silent is sent again",
    )
    escalation_check_interval: float = Field(1.0, gt=0, description="seconds between checks for escalation steps due")
    # Retention (CONTRACT §8, services/notifications/purge.py): at least hourly, as the contract says.
    retention_purge_interval: float = Field(
        3600, gt=0, le=3600, description="seconds between retention purges (at most an hour)"
    )
    retention_purge_chunk: int = Field(
        500, ge=1, le=10_000, description="stored units a purge deletes per write (SQLite: runs of frames)"
    )
    # Reports (CONTRACT §9, services/notifications/report_hours.py): closed hours summed again once marked.
    report_hours_interval: float = Field(
        60, gt=0, le=3600, description="seconds between passes summing the device hours new frames changed"
    )
    # The weekly digest email to admins who ask for it (services/notifications/digest.py, docs/reports.md).
    digest_weekday: int = Field(0, ge=0, le=6, description="day the weekly digest goes out, 0 Monday to 6 Sunday (UTC)")
    digest_hour: int = Field(7, ge=0, le=23, description="hour (UTC) the weekly digest goes out on that day")
    notification_drain_timeout: float = Field(
        10, ge=0, description="seconds a stopping process waits for sends in progress"
    )

    twilio_account_sid: str | None = Field(
        None, validation_alias=AliasChoices("TWILIO_ACCOUNT_SID", "twilio_account_sid")
    )
    twilio_auth_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TWILIO_AUTH_TOKEN", "twilio_auth_token")
    )
    sms_from: str | None = None
    voice_from: str | None = Field(None, description="caller ID of alert calls (E.164); SOLEWATCH_SMS_FROM when unset")
    twilio_base_url: str | None = None
    public_url: str | None = Field(
        None,
        description="externally reachable base URL of the API (https://solewatch.example), "
        "for callbacks from providers such as Twilio's delivery status",
    )
    # Web Push (services/notifications/push.py): without a key, one is made once and kept in the store.
    vapid_private_key: SecretStr | None = Field(
        None, description="VAPID private key signing Web Push (PEM, or base64url of the raw P-256 key)"
    )
    vapid_subject: str | None = Field(
        None,
        pattern=r"^(mailto:|https://)",
        description="VAPID contact for push services (mailto: or https:); "
        "the admin's email, else the public URL, when unset",
    )
    push_ack_token_ttl: int = Field(4 * 3600, gt=0, description="seconds a pushed alert's Acknowledge action works")
    # Partner webhooks (services/notifications/webhooks.py, CONTRACT §7).
    webhook_poll_interval: float = Field(
        1.0, gt=0, description="seconds between looks for webhook deliveries due (new events are sent at once)"
    )
    webhook_concurrency_per_endpoint: int = Field(
        4, ge=1, description="webhook deliveries in flight at once to one endpoint, per process"
    )
    webhook_lease: float = Field(
        60,
        gt=10,
        description="seconds a process holds a webhook delivery it took to send: longer than an attempt (10 s),"
        " so that no other sends it meanwhile; one that dies holding it delays it this much at most",
    )
    webhook_first_retry_max: float = Field(
        30.0, gt=0, le=30, description="most seconds before a failed webhook delivery's first retry (then doubling)"
    )
    webhook_retry_window: float = Field(
        24 * 3600, gt=0, description="seconds a webhook delivery is retried before it is marked failed"
    )
    webhook_disable_after: float = Field(
        24 * 3600,
        gt=0,
        description="seconds a webhook endpoint may keep failing (no delivery since its first failed attempt)"
        " before it is disabled and its tenant's admins are emailed",
    )

    offline_after: float = Field(600, gt=0)
    no_motion_after: float = Field(600, gt=0, description="seconds of still or lying before a no_motion alert")
    low_battery_threshold: int = Field(15, ge=1, le=99, description="battery percent below which low_battery is raised")

    # The dashboard's map background; empty for none (the map still works on a plain background).
    map_tile_url: str = Field(
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="Leaflet tile URL template ({z}/{x}/{y}, optional {s})",
    )

    # Live updates (services/wss/handshakes.py): Engine.IO sessions opened without a token yet.
    wss_max_half_open_sessions: int = Field(
        1000,
        gt=0,
        description="sessions waiting for an authenticated Socket.IO CONNECT at once; handshakes beyond get 503",
    )
    wss_max_half_open_per_address: int = Field(
        100,
        gt=0,
        description="of those, how many one client address (IPv6: its /64) may hold; its handshakes beyond get 503",
    )
    wss_handshake_timeout: float = Field(
        10, gt=0, description="seconds a new session has to authenticate before it is closed"
    )
    wss_ping_interval: float = Field(
        25,
        ge=1,
        le=300,
        description="seconds between Engine.IO pings to each live client (python-engineio's default); a client"
        " silent past it plus 20 s is closed. Shorter keeps idle sockets alive through proxies and NATs that"
        " drop quiet connections sooner",
    )
    # Dashboards that read too slowly (services/wss/backpressure.py).
    wss_send_queue_limit: int = Field(
        200,
        gt=0,
        description="positions queued for one dashboard at most; beyond, it gets only each device's newest",
    )
    wss_slow_reader_timeout: float = Field(
        10, gt=0, description="seconds a dashboard may stay behind its live positions before it is disconnected"
    )

    # Listener behaviour (contract defaults).
    idle_timeout: float = Field(300, gt=0, description="seconds of silence before a device connection is closed")
    # Sleeping 3G watches send only a bare LK every 5 to 8 minutes: past the general idle timeout.
    watch_idle_timeout: float = Field(
        600,
        gt=0,
        description="seconds of silence before a watch connection is closed (never less than idle_timeout)",
    )
    login_timeout: float = Field(30, gt=0, description="seconds a new connection has to log in before it is closed")
    max_connections: int = Field(19_000, gt=0)
    max_unacked_per_connection: int = Field(
        64, gt=0, description="frames awaiting durability before a connection stops being read"
    )
    commit_max_batch: int = Field(4096, gt=0, description="frames in one store transaction at most")
    max_pending_frames: int = Field(
        50_000, gt=0, description="frames awaiting durability before every connection stops being read"
    )
    command_poll_interval: float = Field(2.0, gt=0)
    command_ttl: float = Field(
        86400, gt=0, description="seconds a queued command may wait for its device; never sent afterwards"
    )
    # Wrong device tokens (services/listener/login_backoff.py): LOGIN_ACK 2 at once, then the
    # connection is held this long before it is closed, doubling per consecutive failure.
    device_login_backoff: float = Field(
        1.0,
        ge=0,
        description="seconds a refused device connection is held after "
        "its IMEI's or address's second consecutive failure",
    )
    device_login_backoff_max: float = Field(30.0, ge=0, description="the longest hold (the login timeout cuts it too)")
    device_login_failure_window: float = Field(900, gt=0, description="seconds device login failures are counted over")

    # SQLite durability: FULL fsyncs the WAL at every commit, so an ACK survives
    # a power cut too; group commit keeps that affordable.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"

    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_cert_base64: SecretStr | None = None
    tls_key_base64: SecretStr | None = None

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    environment: Literal["development", "production"] = "development"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _materialize_base64_files(self) -> Settings:
        for name in FILE_SETTINGS:
            encoded = getattr(self, f"{name}_base64")
            if encoded is None:
                continue
            if getattr(self, name) is not None:
                raise SettingsError(f"give {name} as a path or as base64, not both")
            try:
                content = base64.b64decode(encoded.get_secret_value(), validate=True)
            except ValueError as exc:
                raise SettingsError(f"SOLEWATCH_{name.upper()}_BASE64 is not valid base64") from exc
            object.__setattr__(self, name, _write_private_file(name, content))
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError("TLS needs both a certificate and a key")
        return self

    @cached_property
    def sqlite_path(self) -> Path:
        return self.data_dir / "solewatch.db"

    def tracker_ports(self) -> dict[str, int]:
        """The tracker protocols turned on, each with its TCP port."""
        ports = {
            "gt06": self.gt06_port,
            "h02": self.h02_port,
            "watch": self.watch_port,
            "teltonika": self.teltonika_port,
        }
        return {protocol: port for protocol, port in ports.items() if port}

    def idle_timeout_of(self, protocol: str) -> float:
        """Seconds of silence before a connection speaking `protocol` is closed."""
        if protocol == "watch":
            return max(self.watch_idle_timeout, self.idle_timeout)
        return self.idle_timeout

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(_file_source(settings_cls, Path(config_file)))
        return tuple(sources)


def _file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """Environment variables win over the file; the file's format follows its suffix."""
    if not path.is_file():
        raise SettingsError(f"{CONFIG_FILE_ENV} names {path}, which is not a readable file")
    if path.suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=path)
    if path.suffix == ".json":
        return JsonConfigSettingsSource(settings_cls, json_file=path)
    return DotEnvSettingsSource(settings_cls, env_file=path)


def _write_private_file(name: str, content: bytes) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="solewatch-secrets-"))
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    return path


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and the optional config file; overrides win."""
    return Settings(**overrides)
