"""Per-device overrides of the detection settings (the tenant-wide defaults come from the settings).

- `offline_after`: seconds of silence before this device is offline.
- `shift`: the worker's hours, `{"hours": [[start, end], ...], "timezone": "Europe/Paris"}`;
  `no_motion` is raised only inside them (without a shift: at any hour).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from shared.store.audit import AuditEntry


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    offline_after: float | None = None
    shift: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"offline_after": self.offline_after, "shift": self.shift}


class DeviceSettingsStore(Protocol):
    async def device_settings(self, device_id: int) -> DeviceSettings: ...
    async def set_device_settings(
        self, device_id: int, settings: DeviceSettings, *, audit: AuditEntry | None = None
    ) -> None: ...
