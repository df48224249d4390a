"""Request and response bodies of the REST API, with the examples the OpenAPI spec shows."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, model_validator

from shared.protocols.registry import IMEI_PATTERN_ANY, imei_problem
from shared.protocols.tracker import PROTOCOLS
from shared.store.alerts import ALERT_KINDS
from shared.store.devices import MODEL_MAX_LENGTH

AlertKind = Literal[
    "sos", "fall", "no_motion", "low_battery", "off_foot", "tamper", "offline", "geofence_exit", "geofence_enter"
]
assert set(get_args(AlertKind)) == set(ALERT_KINDS)
AlertStatus = Literal["open", "acknowledged", "resolved"]

# Any device's identifier (CONTRACT §10: 15 digits for xsole, gt06, teltonika; 10 to 15 for h02, watch).
IMEI_PATTERN = IMEI_PATTERN_ANY
E164_PATTERN = r"^\+[1-9]\d{6,14}$"

_TS = "2026-01-01T00:00:00Z"

# A name is held to the spec's length as sent, needs one character that is not
# whitespace, and is stored trimmed (trimming first would accept what the spec refuses).
ShortName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S"), AfterValidator(str.strip)]
LongName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S"), AfterValidator(str.strip)]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(examples)})


# -- devices ----------------------------------------------------------------------------


class DeviceIn(BaseModel):
    imei: str = Field(
        pattern=IMEI_PATTERN,
        description="the identifier the device sends: 15 decimal digits for xsole, gt06 and teltonika,"
        " 10 to 15 for h02 and watch (no check digit required)",
    )
    name: ShortName = Field(description="who wears it, or where it is used")
    protocol: str = Field(
        "xsole",
        description="the protocol it speaks (CONTRACT §10); only xsole devices get a secret token",
        json_schema_extra={"enum": list(PROTOCOLS)},
    )
    model: str | None = Field(
        None,
        min_length=1,
        max_length=MODEL_MAX_LENGTH,
        pattern=r"\S",
        description="what the device is, free text (e.g. 'Concox GT06N')",
    )
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"imei": "356307042441013", "name": "Alice"},
                {"imei": "864035051234567", "name": "Night guard", "protocol": "gt06", "model": "Concox GT06N"},
            ],
            # The IMEI's length depends on the protocol (CONTRACT §10), said in the spec too (JSON Schema
            # 2020-12, OpenAPI 3.1): 10 to 15 digits for h02 and watch, 15 for the others and by default.
            "if": {"properties": {"protocol": {"enum": ["h02", "watch"]}}, "required": ["protocol"]},
            "then": {},
            "else": {"properties": {"imei": {"pattern": "^[0-9]{15}$"}}},
        },
    )

    @model_validator(mode="after")
    def _imei_of_its_protocol(self) -> DeviceIn:
        problem = imei_problem(self.protocol, self.imei)
        if problem is not None:
            raise ValueError(problem)
        return self


class LastPosition(BaseModel):
    ts: str
    lat: float
    lon: float


class DeviceOut(BaseModel):
    imei: str
    name: str
    protocol: str = Field(description="the protocol it speaks: xsole, gt06, h02, watch or teltonika")
    model: str | None = Field(description="what the device is, as registered; null when not given")
    created_at: str
    enabled: bool = Field(description="false: its connection is closed and its LOGIN refused (status 3)")
    online: bool = Field(description="a listener holds the device's connection right now")
    last_seen: str | None = Field(description="when the last frame from the device was received")
    battery: int | None = Field(description="% at the newest report")
    last_position: LastPosition | None = Field(
        description="the newest valid GPS fix; null without one, or when the tenant's location visibility hides it"
    )
    model_config = _examples(
        {
            "imei": "356307042441013",
            "name": "Alice",
            "protocol": "xsole",
            "model": None,
            "created_at": "2026-01-01T00:00:00.000Z",
            "enabled": True,
            "online": True,
            "last_seen": "2026-01-01T08:30:12Z",
            "battery": 87,
            "last_position": {"ts": "2026-01-01T08:30:10Z", "lat": 43.6163, "lon": 7.0553},
        }
    )


class DeviceRegistered(DeviceOut):
    token: str | None = Field(
        None,
        description="the device secret, 32 hex characters: shown only in this response; absent for the"
        " other protocols' devices, which carry none",
    )
    model_config = _examples(
        {
            "imei": "356307042441013",
            "name": "Alice",
            "protocol": "xsole",
            "model": None,
            "created_at": "2026-01-01T00:00:00.000Z",
            "enabled": True,
            "online": False,
            "last_seen": None,
            "battery": None,
            "last_position": None,
            "token": "000102030405060708090a0b0c0d0e0f",
        }
    )


class DevicePage(BaseModel):
    items: list[DeviceOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class PositionOut(BaseModel):
    ts: str = Field(description="device time, ISO-8601 UTC")
    lat: float = Field(description="degrees")
    lon: float = Field(description="degrees")
    alt: int = Field(description="metres")
    speed: float = Field(description="m/s")
    course: float = Field(description="degrees, 0 to 359.9")
    sats: int
    hdop: float
    battery: int | None = Field(description="%; null when the device did not say (some trackers' packets)")
    buffered: bool = Field(description="recorded while offline and sent late")
    model_config = _examples(
        {
            "ts": _TS,
            "lat": 43.6163,
            "lon": 7.0553,
            "alt": 12,
            "speed": 1.4,
            "course": 270.5,
            "sats": 9,
            "hdop": 0.8,
            "battery": 87,
            "buffered": False,
        }
    )


class PositionPage(BaseModel):
    items: list[PositionOut]
    next_cursor: str | None


# -- alerts -----------------------------------------------------------------------------


class AlertOut(BaseModel):
    id: int
    imei: str
    kind: AlertKind
    ts: str = Field(description="when it happened (device time for alarms)")
    lat: float | None
    lon: float | None
    battery: int | None
    status: AlertStatus
    created_at: str
    acknowledged_at: str | None = None
    acknowledged_by: str | None = None
    resolved_at: str | None = None
    resolved_by: str | None = None
    resolution_note: str | None = None
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "imei": "356307042441013",
                    "kind": "sos",
                    "ts": _TS,
                    "lat": 43.6163,
                    "lon": 7.0553,
                    "battery": 80,
                    "status": "acknowledged",
                    "created_at": "2026-01-01T00:00:00.412Z",
                    "acknowledged_at": "2026-01-01T00:01:30.007Z",
                    "acknowledged_by": "night@acme.example",
                    "resolved_at": None,
                    "resolved_by": None,
                    "resolution_note": None,
                }
            ]
        },
    )


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None


class TimelineEntry(BaseModel):
    at: str
    action: str = Field(description="raised, notified, notification_failed, acknowledged, resolved...")
    actor: str | None
    detail: dict[str, Any]
    model_config = _examples(
        {
            "at": "2026-01-01T00:00:01.210Z",
            "action": "notified",
            "actor": None,
            "detail": {"channel": "email", "contact_id": 3},
        }
    )


class AlertDetail(AlertOut):
    timeline: list[TimelineEntry]


class ResolveIn(BaseModel):
    note: str | None = Field(None, max_length=2000, description="what was done")
    model_config = _examples({"note": "worker called back, all fine"})


# -- contacts ---------------------------------------------------------------------------


class ContactIn(BaseModel):
    name: LongName
    email: EmailStr | None = None
    phone: str | None = Field(None, pattern=E164_PATTERN, description="E.164, e.g. +33612345678")
    kinds: list[AlertKind] = Field(
        default_factory=lambda: list(ALERT_KINDS),  # type: ignore[arg-type]  # str, made AlertKind by the assert above
        min_length=1,
        description="the alert kinds this contact is told about; all when omitted",
    )
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # What _reachable checks, said in the schema: an email, a phone number, or both.
            "anyOf": [{"required": [name], "properties": {name: {"type": "string"}}} for name in ("email", "phone")],
            "examples": [
                {
                    "name": "Night supervisor",
                    "email": "night@acme.example",
                    "phone": "+33612345678",
                    "kinds": ["sos", "fall"],
                }
            ],
        },
    )

    @model_validator(mode="after")
    def _reachable(self) -> ContactIn:
        if self.email is None and self.phone is None:
            raise ValueError("give an email, a phone number, or both")
        self.kinds = list(dict.fromkeys(self.kinds))
        return self


class ContactOut(BaseModel):
    id: int
    name: str
    email: str | None
    phone: str | None
    kinds: list[str]
    created_at: str
    model_config = _examples(
        {
            "id": 3,
            "name": "Night supervisor",
            "email": "night@acme.example",
            "phone": "+33612345678",
            "kinds": ["sos", "fall"],
            "created_at": "2026-01-01T00:00:00.000Z",
        }
    )


class ContactList(BaseModel):
    items: list[ContactOut]
