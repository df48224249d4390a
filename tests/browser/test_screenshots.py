"""Running the tests leaves the committed screenshots alone (scripts/screenshots refreshes them)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import REPOSITORY, Browser, Server, screenshots_state, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]


async def test_screenshots_land_outside_the_repository(
    browser: Browser, server: Server, committed_screenshots: dict[str, tuple[int, str]]
) -> None:
    page, _ = await browser.open(server)
    await sign_in(page, *server.admin)
    taken = await browser.screenshot(page, "screenshot-check")

    assert taken.read_bytes().startswith(b"\x89PNG"), taken
    assert REPOSITORY not in taken.resolve().parents, f"a test wrote {taken} inside the repository"
    # neither this test nor any browser test before it in this run touched docs/screenshots/
    assert screenshots_state() == committed_screenshots, "the tests rewrote docs/screenshots/"
    assert not (REPOSITORY / "docs" / "screenshots" / taken.name).exists()
    taken.unlink()  # only a check: scripts/screenshots must not copy it next to the README's pictures
