"""Browser tests of the dashboard: Playwright for Python driving Debian's chromium
against a real `solewatch run` subprocess fed by its simulator.

Playwright's own browser download is never used (`playwright install` cannot
run here): the tests launch the system chromium and skip, saying why, when it
or the playwright package is missing. Every request the page makes must stay
on this machine; anything else is aborted and fails the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio

from services.simulator.runner import simulated_imeis
from tests.helpers.alerting import SmtpSink
from tests.helpers.process import SolewatchProcess, free_port

CHROMIUM = os.environ.get("SOLEWATCH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Screenshots go to a temporary folder, so the suite never rewrites the README's committed ones;
# scripts/screenshots names docs/screenshots here to refresh those (docs/dashboard.md).
SCREENSHOTS_ENV = "SOLEWATCH_SCREENSHOTS_DIR"
ADMIN = ("admin@acme.example", "correct horse battery")
SIMULATED = 5
VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}
# Counts the tones the page plays (OscillatorNode.start), as a user would hear them.
COUNT_TONES = """
window.__tones = 0;
const realStart = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) { window.__tones += 1; return realStart.apply(this, args); };
"""


def _missing_browser() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no chromium at {CHROMIUM} (Debian: apt-get install chromium; ./scripts/test does it)"
    return None


@dataclass
class Server:
    """The `solewatch run --simulate` under test, and REST calls as its users."""

    process: SolewatchProcess
    admin: tuple[str, str] = ADMIN
    simulated: list[str] = field(default_factory=lambda: simulated_imeis(SIMULATED))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.process.http_port}"

    @property
    def listener_port(self) -> int:
        return self.process.listener_port

    @asynccontextmanager
    async def user(self, email: str, password: str) -> AsyncIterator[httpx.AsyncClient]:
        """An httpx client carrying that user's access token."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            answer = await client.post("/api/v1/auth/token", json={"email": email, "password": password})
            assert answer.status_code == 200, answer.text
            client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
            yield client


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("dashboard")
    env = {
        "SOLEWATCH_ADMIN_EMAIL": ADMIN[0],
        "SOLEWATCH_ADMIN_PASSWORD": ADMIN[1],
        # A closed port on this machine: the map runs without tiles, as on an offline site.
        "SOLEWATCH_MAP_TILE_URL": f"http://127.0.0.1:{free_port()}/tiles/{{z}}/{{x}}/{{y}}.png",
    }
    # No random SOS: the tests raise their own, and count alerts and markers.
    process = SolewatchProcess(
        tmp / "data",
        "run",
        "--simulate",
        str(SIMULATED),
        "--rate",
        "1",
        "--sos-per-minute",
        "0",
        log_path=tmp / "solewatch.log",
        env=env,
    ).start()
    try:
        yield Server(process)
    finally:
        process.stop_quietly()


@dataclass
class TeamServer(Server):
    """A `solewatch run` without simulated insoles whose emails (invitations, resets) reach `mailbox`,
    with links to itself (SOLEWATCH_PUBLIC_URL). Tests give themselves tenants of their own."""

    mailbox: SmtpSink = field(default_factory=SmtpSink)


@pytest.fixture(scope="session")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    from aiosmtpd.controller import Controller

    tmp = tmp_path_factory.mktemp("team")
    mailbox = SmtpSink()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    env = {
        "SOLEWATCH_ADMIN_EMAIL": ADMIN[0],
        "SOLEWATCH_ADMIN_PASSWORD": ADMIN[1],
        "SOLEWATCH_MAP_TILE_URL": f"http://127.0.0.1:{free_port()}/tiles/{{z}}/{{x}}/{{y}}.png",
        "SOLEWATCH_SMTP_HOST": "127.0.0.1",
        "SOLEWATCH_SMTP_PORT": str(smtp.port),
        "SOLEWATCH_SMTP_STARTTLS": "false",
        "SOLEWATCH_SMTP_FROM": "solewatch@team.example",
    }
    process = SolewatchProcess(tmp / "data", "run", log_path=tmp / "solewatch.log", env=env)
    process.env["SOLEWATCH_PUBLIC_URL"] = f"http://127.0.0.1:{process.http_port}"  # the links' base
    try:
        process.start()
        yield TeamServer(process, simulated=[], mailbox=mailbox)
    finally:
        process.stop_quietly()
        smtp.stop()


@dataclass
class Traffic:
    """What one page received from the server as data (API answers, Socket.IO messages over
    polling or WebSocket; not the static files) and what it tried to fetch elsewhere."""

    bodies: list[str] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)
    off_machine: list[str] = field(default_factory=list)
    _reads: list[asyncio.Task[None]] = field(default_factory=list)

    async def settled(self) -> str:
        """Everything received so far, as one text."""
        await asyncio.gather(*self._reads, return_exceptions=True)
        return "\n".join(self.bodies + self.frames)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[FAILED] = report.failed


FAILED = pytest.StashKey[bool]()


REPOSITORY = Path(__file__).resolve().parents[2]
COMMITTED_SCREENSHOTS = REPOSITORY / "docs" / "screenshots"


def screenshots_state() -> dict[str, tuple[int, str]]:
    """Each file in docs/screenshots/: its modification time (ns) and SHA-256."""
    return {
        path.name: (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(COMMITTED_SCREENSHOTS.iterdir())
        if path.is_file()
    }


@pytest.fixture(scope="session", autouse=True)
def committed_screenshots() -> dict[str, tuple[int, str]]:
    """docs/screenshots/ as the browser tests found it, for test_screenshots to compare."""
    return screenshots_state()


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests' screenshots go: $SOLEWATCH_SCREENSHOTS_DIR, else a temporary folder."""
    chosen = os.environ.get(SCREENSHOTS_ENV)
    return Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")


class Browser:
    """Headless Debian chromium; each page in its own context, watched for what it fetches."""

    def __init__(self, browser: Any, screenshots: Path):
        self.browser = browser
        self.screenshots = screenshots
        self.pages: list[tuple[Any, list[str]]] = []

    async def open(self, server: Server, form: str = "desktop") -> tuple[Any, Traffic]:
        """A fresh page at the dashboard, recording its traffic and refusing any off-machine request."""
        context = await self.browser.new_context(**VIEWPORTS[form], accept_downloads=True)
        context.set_default_timeout(20_000)
        await context.add_init_script(COUNT_TONES)
        traffic = Traffic()

        async def local_only(route: Any) -> None:
            host = urlsplit(route.request.url).hostname
            if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                await route.continue_()
            else:
                traffic.off_machine.append(route.request.url)
                await route.abort()

        async def read(response: Any) -> None:
            if "/assets/" in response.url:
                return
            try:
                traffic.bodies.append((await response.body()).decode("utf-8", "replace"))
            except Exception:  # redirects and aborted requests have no body
                pass

        def on_websocket(socket: Any) -> None:
            socket.on(
                "framereceived",
                lambda payload: traffic.frames.append(
                    payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
                ),
            )

        await context.route("**/*", local_only)
        page = await context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        page.on("response", lambda response: traffic._reads.append(asyncio.ensure_future(read(response))))
        page.on("websocket", on_websocket)
        self.pages.append((page, console))
        await page.goto(server.url + "/")
        return page, traffic

    async def screenshot(self, page: Any, name: str) -> Path:
        """`name`.png in the screenshots folder, once the map (if shown) has finished moving; its path."""
        from playwright.async_api import expect

        if await page.get_by_test_id("app").is_visible():  # not on the sign-in and link pages
            await expect(page.get_by_test_id("map")).to_have_attribute("data-idle", "true")
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{name}.png"
        await page.screenshot(path=str(path))
        return path

    async def close(self) -> None:
        """The contexts of this test's pages closed: the browser goes on to the next test."""
        for context in {id(page.context): page.context for page, _ in self.pages}.values():
            await context.close()

    async def keep_evidence(self, folder: Path) -> None:
        """After a failure: each page's screenshot and console, for whoever reads the report."""
        folder.mkdir(parents=True, exist_ok=True)
        for number, (page, console) in enumerate(self.pages):
            if page.is_closed():
                continue
            path = folder / f"page{number}.png"
            await page.screenshot(path=str(path))
            print(f"page {number} at {page.url}: screenshot {path}; console:", *console[-40:], sep="\n  ")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Any]:
    """One chromium for the session (a launch costs half a second); each test's pages get contexts
    of their own, closed after it, so nothing of one test's pages is left for the next. The tests
    using it run in the session's event loop, where it lives (their modules' `pytestmark`)."""
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def browser(
    request: pytest.FixtureRequest, tmp_path: Path, screenshots_dir: Path, chromium: Any
) -> AsyncIterator[Browser]:
    from playwright.async_api import expect

    expect.set_options(timeout=20_000)
    watched = Browser(chromium, screenshots_dir)
    try:
        yield watched
        if request.node.stash.get(FAILED, False):
            await watched.keep_evidence(tmp_path / "failure")
    finally:
        await watched.close()


async def sign_in(page: Any, email: str, password: str) -> None:
    from playwright.async_api import expect

    await page.get_by_test_id("login-email").fill(email)
    await page.get_by_test_id("login-password").fill(password)
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("app")).to_be_visible()
    await expect(page.get_by_test_id("live-status")).to_have_text("Live")
