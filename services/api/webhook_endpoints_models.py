"""Bodies of /api/v1/webhook-endpoints (CONTRACT §7), with the examples the OpenAPI spec shows."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from shared.webhook_events import EVENT_TYPES, EventType

DeliveryStatus = Literal["pending", "delivered", "failed"]

WebhookUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2000,
        pattern=r"^[hH][tT][tT][pP][sS]?://\S+$",
        description="where events are POSTed: http(s); https to a public host in production",
    ),
]
EventList = Annotated[
    list[EventType],
    Field(min_length=1, max_length=len(EVENT_TYPES), description="the event types this endpoint receives"),
]
_URL = "https://arc.example/solewatch/events"
_TIME = "2026-01-01T00:00:00.000Z"


class WebhookEndpointIn(BaseModel):
    url: WebhookUrl
    events: EventList
    description: str | None = Field(None, max_length=500)
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"url": _URL, "events": ["alert.raised"], "description": "Alarm centre"}]},
    )


class WebhookEndpointPatch(BaseModel):
    url: WebhookUrl | None = None
    events: EventList | None = None
    enabled: StrictBool | None = None
    description: str | None = Field(None, max_length=500)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})


class WebhookEndpointOut(BaseModel):
    id: int
    url: str
    events: list[EventType]
    description: str | None
    enabled: bool
    created_at: str
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1,
                    "url": _URL,
                    "events": ["alert.raised"],
                    "description": None,
                    "enabled": True,
                    "created_at": _TIME,
                }
            ]
        }
    )


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str = Field(description="the signing secret (HMAC-SHA256 key, as UTF-8), shown only in this answer")


class WebhookEndpointPage(BaseModel):
    items: list[WebhookEndpointOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class WebhookDeliveryOut(BaseModel):
    event_id: str = Field(description="`evt_...`, the same on every attempt (the Solewatch-Event-Id header)")
    type: EventType
    status: DeliveryStatus
    attempts: int
    last_status: int | None = Field(description="the HTTP status of the last attempt; null when none came")
    last_error: str | None
    next_attempt_at: str | None = Field(description="when it is tried next; null once delivered or failed")
    delivered_at: str | None
    created_at: str


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDeliveryOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page; null on the last page")


class WebhookQueued(BaseModel):
    event_id: str
    status: Literal["pending"]
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"event_id": "evt_5f0c1e2d3a4b5c6d7e8f9a0b", "status": "pending"}]}
    )
