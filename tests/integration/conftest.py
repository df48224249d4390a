"""Fixtures shared by the integration tests: the alerting harness and its SMTP server, and
the HTTP app over each storage adapter (`harness`)."""

from tests.helpers.alerting import smtp, start_alerting  # noqa: F401  (fixtures, registered by import)
from tests.helpers.api import harness  # noqa: F401  (a fixture, registered by import)
from tests.helpers.webhook_receiver import receiver  # noqa: F401  (a fixture, registered by import)
