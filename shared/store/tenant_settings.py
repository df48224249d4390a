"""A tenant's data-lifecycle settings (CONTRACT §8): how long telemetry and
resolved alerts are kept, and when supervisors may see where a worker is.

A tenant that never saved any has the defaults below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from shared.store.audit import AuditEntry

LocationVisibility = Literal["always", "on_shift", "alerts_only"]


@dataclass(frozen=True, slots=True)
class TenantSettings:
    telemetry_retention_days: int = 90  # positions, heartbeats, activities, by device time
    alert_retention_days: int = 730  # resolved alerts, from when they were resolved
    location_visibility: LocationVisibility = "always"

    def as_dict(self) -> dict[str, Any]:
        return {
            "telemetry_retention_days": self.telemetry_retention_days,
            "alert_retention_days": self.alert_retention_days,
            "location_visibility": self.location_visibility,
        }


class TenantSettingsStore(Protocol):
    async def tenant_settings(self, tenant_id: int) -> TenantSettings:
        """The tenant's settings; the defaults when it never saved any."""
        ...

    async def set_tenant_settings(
        self, tenant_id: int, settings: TenantSettings, *, audit: AuditEntry | None = None
    ) -> None:
        """Replace the tenant's settings whole (with the audit entry, in the same write)."""
        ...
