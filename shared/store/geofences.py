"""Geofences: areas a tenant draws on the map, and the port's geofence half.

A geofence's shape is kept as the API received it, GeoJSON-like, in degrees
with longitude first:

- `{"type": "Polygon", "coordinates": [[[lon, lat], ...], ...]}`: a GeoJSON
  Polygon, outer ring first, then holes; every ring closed;
- `{"type": "Circle", "center": [lon, lat], "radius_m": r}`.

It applies to the devices it lists by IMEI, or to every device of its tenant
when the list is empty. `alert_on` says which crossings raise an alert.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shared.store.audit import AuditEntry

GeofenceCrossing = Literal["enter", "exit"]
CROSSINGS: tuple[GeofenceCrossing, ...] = ("enter", "exit")


@dataclass(frozen=True, slots=True)
class Geofence:
    id: int
    tenant_id: int
    name: str
    shape: dict[str, Any]  # GeoJSON Polygon, or {"type": "Circle", "center": [lon, lat], "radius_m": r}
    devices: tuple[str, ...]  # IMEIs; empty: every device of the tenant
    alert_on: tuple[str, ...]  # "enter", "exit" or both
    created_at: float

    def applies_to(self, imei: str) -> bool:
        return not self.devices or imei in self.devices


def geofences_of_device(geofences: Iterable[Geofence], imei: str) -> list[Geofence]:
    """The tenant's geofences that watch this device."""
    return [geofence for geofence in geofences if geofence.applies_to(imei)]


class GeofenceStore(Protocol):
    async def add_geofence(
        self,
        *,
        tenant_id: int,
        name: str,
        shape: dict[str, Any],
        devices: tuple[str, ...],
        alert_on: tuple[str, ...],
        audit: AuditEntry | None = None,
    ) -> Geofence:
        """`audit` (its target id left None) is written with the geofence, naming its new id."""

    async def geofences(self, tenant_id: int) -> list[Geofence]:
        """The tenant's geofences, oldest first."""

    async def geofence(self, tenant_id: int, geofence_id: int) -> Geofence | None:
        """None when there is no such geofence in the tenant."""

    async def delete_geofence(self, tenant_id: int, geofence_id: int, *, audit: AuditEntry | None = None) -> bool:
        """False when there was no such geofence in the tenant."""
