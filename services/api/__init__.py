"""The REST API: devices, positions, alerts and contacts under /api/v1, plus Socket.IO."""

from services.api.app import create_app

__all__ = ["create_app"]
