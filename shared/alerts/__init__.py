"""Alert rules shared by every service: the public shape of an alert, notification bookkeeping."""

from shared.alerts.serialize import alert_to_api, iso_utc

__all__ = ["alert_to_api", "iso_utc"]
