"""Fixtures shared by the integration tests: the alerting harness and its SMTP server."""

from tests.helpers.alerting import smtp, start_alerting  # noqa: F401  (fixtures, registered by import)
