"""The JSON log an operator reads: one solewatch line per SMS at info, not twilio's request dump."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import structlog

from shared.logging import configure_logging
from tests.helpers.fake_twilio import FakeTwilio

ANA, BOB = "+33612345678", "+447700900123"


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio(account_sid="AC" + "1234abcd" * 4, auth_token="twilio-token-for-tests") as fake:
        yield fake


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    twilio_level = logging.getLogger("twilio").level
    config = structlog.get_config()
    yield
    root.handlers[:], root.level = handlers, level
    logging.getLogger("twilio").setLevel(twilio_level)
    structlog.configure(**config)


async def texted_log(
    level: str, twilio: FakeTwilio, start_alerting: Any, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, Any]]:
    """The JSON lines written to stderr while an SOS is texted to two contacts."""
    app = await start_alerting(
        None,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        sms_from="+15005550006",
        twilio_base_url=twilio.url,
    )
    device = await app.device()
    await app.contact(device, "Ana", None, phone=ANA)
    await app.contact(device, "Bob", None, phone=BOB)
    capsys.readouterr()
    configure_logging(level)  # after capsys swapped stderr, as the process does at start
    await app.alarm(device)
    await app.settle()
    assert len(twilio.accepted) == 2
    return [orjson.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]


@pytest.mark.usefixtures("restore_logging")
async def test_an_sms_is_one_log_line_at_info(twilio, start_alerting, capsys):
    lines = await texted_log("info", twilio, start_alerting, capsys)
    assert [line for line in lines if str(line.get("logger", "")).startswith("twilio")] == []
    sent = [line for line in lines if line["event"] == "notification_sent"]
    assert len(sent) == 2 and {line["channel"] for line in sent} == {"sms"}


@pytest.mark.usefixtures("restore_logging")
async def test_twilio_requests_are_still_logged_at_debug(twilio, start_alerting, capsys):
    lines = await texted_log("debug", twilio, start_alerting, capsys)
    assert any(str(line.get("logger", "")).startswith("twilio") for line in lines)
