"""/api/v1/geofences: areas whose crossing raises `geofence_exit` or `geofence_enter` alerts.

A geofence is a GeoJSON Polygon (outer ring, then holes; longitude first) or
a circle, `{"type": "Circle", "center": [lon, lat], "radius_m": r}`. It
watches the devices it lists, or every device of the tenant when the list is
empty. Anyone in the tenant reads them; admins create and delete them.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.api.deps import AdminPrincipal, ContextDep, CurrentPrincipal, ResourceId
from services.api.models import IMEI_PATTERN, ShortName
from services.authn.models import ErrorOut
from services.context import ServiceContext
from shared.alerts import iso_utc
from shared.store.geofences import Geofence, GeofenceStore

router = APIRouter(prefix="/api/v1/geofences", tags=["geofences"])

MAX_RADIUS_M = 100_000  # a "geofence" wider than 100 km is a mistake, not a site
MAX_RING_POSITIONS = 1000
MAX_RINGS = 50
MAX_DEVICES = 1000

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such geofence in the caller's tenant"},
}

Crossing = Literal["enter", "exit"]
# The ranges are checked by _lon_lat; the schema says them too, so clients (and fuzzers) know them.
# Numbers are strict: JSON's true is not a coordinate, nor "7.05".
Number = Annotated[float, Field(strict=True)]
Position = Annotated[
    list[Number],
    Field(
        min_length=2,
        max_length=3,
        description="[lon, lat] (an altitude is dropped)",
        json_schema_extra={
            "prefixItems": [
                {"type": "number", "minimum": -180, "maximum": 180},
                {"type": "number", "minimum": -90, "maximum": 90},
            ]
        },
    ),
]


def _lon_lat(position: list[float]) -> list[float]:
    lon, lat = position[0], position[1]
    if not -180 <= lon <= 180:
        raise ValueError(f"longitude {lon} is outside -180..180 (positions are [lon, lat])")
    if not -90 <= lat <= 90:
        raise ValueError(f"latitude {lat} is outside -90..90 (positions are [lon, lat])")
    return [lon, lat]


class CircleGeometry(BaseModel):
    type: Literal["Circle"]
    center: Position
    radius_m: float = Field(gt=0, le=MAX_RADIUS_M, strict=True, description="metres")
    model_config = ConfigDict(extra="forbid")

    @field_validator("center")
    @classmethod
    def _center(cls, center: list[float]) -> list[float]:
        return _lon_lat(center)


class PolygonGeometry(BaseModel):
    type: Literal["Polygon"]
    coordinates: list[list[Position]] = Field(
        min_length=1,
        max_length=MAX_RINGS,
        description="linear rings, the outer one first, then holes: closed, at least 4 positions each",
    )
    model_config = ConfigDict(extra="forbid")

    @field_validator("coordinates")
    @classmethod
    def _rings(cls, rings: list[list[list[float]]]) -> list[list[list[float]]]:
        checked = []
        for number, ring in enumerate(rings):
            name = "the outer ring" if number == 0 else f"hole {number}"
            if len(ring) < 4:
                raise ValueError(f"{name} has {len(ring)} positions; a closed ring needs at least 4")
            if len(ring) > MAX_RING_POSITIONS:
                raise ValueError(f"{name} has {len(ring)} positions; at most {MAX_RING_POSITIONS}")
            positions = [_lon_lat(position) for position in ring]
            if positions[0] != positions[-1]:
                raise ValueError(f"{name} is not closed: its last position must repeat its first")
            if len({tuple(p) for p in positions}) < 3 or _area(positions) == 0:
                raise ValueError(f"{name} encloses no area")
            checked.append(positions)
        return checked


def _area(ring: list[list[float]]) -> float:
    """Twice the ring's signed area in square degrees (shoelace): zero for a flat ring."""
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairwise(ring))


Geometry = Annotated[CircleGeometry | PolygonGeometry, Field(discriminator="type")]


def _exit_only() -> list[Crossing]:
    return ["exit"]


class GeofenceIn(BaseModel):
    name: ShortName
    geometry: Geometry
    devices: list[Annotated[str, Field(pattern=IMEI_PATTERN)]] = Field(
        default_factory=list,
        max_length=MAX_DEVICES,
        description="the IMEIs it watches; every device of the tenant when empty or omitted",
    )
    alert_on: list[Crossing] = Field(
        default_factory=_exit_only, min_length=1, description="which crossings raise an alert; exit when omitted"
    )
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Depot",
                    "geometry": {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 250},
                    "devices": [],
                    "alert_on": ["exit"],
                },
                {
                    "name": "Quarry pit",
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [
                            [[7.050, 43.610], [7.060, 43.610], [7.060, 43.620], [7.050, 43.620], [7.050, 43.610]]
                        ],
                    },
                    "devices": ["356307042441013"],
                    "alert_on": ["enter", "exit"],
                },
            ]
        },
    )

    @model_validator(mode="after")
    def _deduplicate(self) -> GeofenceIn:
        self.devices = list(dict.fromkeys(self.devices))
        self.alert_on = list(dict.fromkeys(self.alert_on))
        return self


class GeofenceOut(BaseModel):
    id: int
    name: str
    geometry: Geometry
    devices: list[str] = Field(description="the IMEIs it watches; empty: every device of the tenant")
    alert_on: list[Crossing]
    created_at: str
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 4,
                    "name": "Depot",
                    "geometry": {"type": "Circle", "center": [7.0553, 43.6163], "radius_m": 250},
                    "devices": [],
                    "alert_on": ["exit"],
                    "created_at": "2026-01-01T00:00:00.000Z",
                }
            ]
        }
    )


class GeofenceList(BaseModel):
    items: list[GeofenceOut]


def geofence_view(geofence: Geofence) -> dict[str, Any]:
    return {
        "id": geofence.id,
        "name": geofence.name,
        "geometry": geofence.shape,
        "devices": list(geofence.devices),
        "alert_on": list(geofence.alert_on),
        "created_at": iso_utc(geofence.created_at, millis=True),
    }


def _store(context: ServiceContext) -> GeofenceStore:
    return context.store


@router.get("", response_model=GeofenceList, summary="List the tenant's geofences")
async def list_geofences(context: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    return {"items": [geofence_view(g) for g in await _store(context).geofences(principal.tenant_id)]}


@router.post(
    "",
    status_code=201,
    response_model=GeofenceOut,
    summary="Add a geofence (admin)",
    responses={422: {"description": "invalid geometry, or a device not in the caller's tenant"}},
)
async def add_geofence(body: GeofenceIn, context: ContextDep, principal: AdminPrincipal) -> dict[str, Any]:
    unknown = []
    for index, imei in enumerate(body.devices):
        device = await context.store.device_by_imei(imei)
        if device is None or device.tenant_id != principal.tenant_id:
            unknown.append(
                {"loc": ["body", "devices", index], "msg": f"no device {imei} in this tenant", "type": "unknown_device"}
            )
    if unknown:
        raise HTTPException(422, unknown)
    geofence = await _store(context).add_geofence(
        tenant_id=principal.tenant_id,
        name=body.name,
        shape=body.geometry.model_dump(),
        devices=tuple(body.devices),
        alert_on=tuple(body.alert_on),
        audit=principal.audit(
            "geofence.create", "geofence", name=body.name, devices=list(body.devices), alert_on=list(body.alert_on)
        ),
    )
    return geofence_view(geofence)


@router.get("/{geofence_id}", response_model=GeofenceOut, summary="One geofence", responses=_NOT_FOUND)
async def get_geofence(geofence_id: ResourceId, context: ContextDep, principal: CurrentPrincipal) -> dict[str, Any]:
    geofence = await _store(context).geofence(principal.tenant_id, geofence_id)
    if geofence is None:
        raise HTTPException(404, "geofence not found")
    return geofence_view(geofence)


@router.delete(
    "/{geofence_id}",
    status_code=204,
    response_class=Response,
    summary="Remove a geofence (admin)",
    responses=_NOT_FOUND,
)
async def delete_geofence(geofence_id: ResourceId, context: ContextDep, principal: AdminPrincipal) -> Response:
    audit = principal.audit("geofence.delete", "geofence", geofence_id)
    if not await _store(context).delete_geofence(principal.tenant_id, geofence_id, audit=audit):
        raise HTTPException(404, "geofence not found")
    return Response(status_code=204)
