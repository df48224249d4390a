"""The supervisor's web dashboard: static files served at `/` beside the REST API (docs/dashboard.md)."""

from services.dashboard.serve import DashboardFiles, mount_dashboard

__all__ = ["DashboardFiles", "mount_dashboard"]
