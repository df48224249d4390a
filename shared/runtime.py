"""How every solewatch process lives: start, serve, reload on SIGHUP, drain on SIGTERM.

A process is a list of components started in order and stopped in reverse
order. Stopping happens in two passes, as uvicorn does: every component first
drains (stops taking work and finishes what it holds), then every one closes.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, runtime_checkable

from shared.config import Settings
from shared.logging import get_logger

log = get_logger("solewatch.runtime")


@runtime_checkable
class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def drain(self) -> None:
        """Stop taking new work and finish, or safely hand back, what is in flight."""

    async def close(self) -> None: ...

    async def reload(self, settings: Settings) -> None:
        """Apply new settings and reconnect to backends."""

    async def check_ready(self) -> str | None:
        """None when ready, else why not."""


class Runtime:
    def __init__(self, components: Sequence[Component], load_settings: Callable[[], Settings]):
        self.components = list(components)
        self._load_settings = load_settings
        self._stop = asyncio.Event()
        self._started: list[Component] = []
        self.starting = False
        self.draining = False

    def request_stop(self) -> None:
        self._stop.set()

    async def readiness(self) -> dict[str, str | None]:
        """Each component's reason for not being ready (None when it is)."""
        if self.draining:
            return {"runtime": "draining"}
        if self.starting:
            # Components that serve (HTTP) start before the last ones (the first admin):
            # ready means all of them are.
            return {"runtime": "starting"}
        reasons: dict[str, str | None] = {}
        for component in self.components:
            try:
                reasons[component.name] = await asyncio.wait_for(component.check_ready(), 2.0)
            except Exception as exc:  # a failing probe means not ready, not a crash
                reasons[component.name] = f"readiness check failed: {exc!r}"
        return reasons

    async def reload(self) -> None:
        try:
            settings = self._load_settings()
        except Exception as exc:
            log.error("reload_refused", error=str(exc))
            return
        for component in self._started:
            try:
                await component.reload(settings)
            except Exception:
                log.exception("reload_failed", component=component.name)
        log.info("reloaded")

    async def run(self) -> None:
        """Start everything, serve until asked to stop (SIGTERM, SIGINT), then drain and close."""
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.shutdown()
            self._remove_signals(loop)

    async def start(self) -> None:
        self.starting = True
        for component in self.components:
            await component.start()
            self._started.append(component)
            log.info("component_started", component=component.name)
        self.starting = False
        log.info("ready", components=[c.name for c in self.components])

    async def shutdown(self) -> None:
        self.draining = True
        log.info("draining")
        for component in reversed(self._started):
            try:
                await component.drain()
            except Exception:
                log.exception("drain_failed", component=component.name)
        for component in reversed(self._started):
            try:
                await component.close()
            except Exception:
                log.exception("close_failed", component=component.name)
        self._started.clear()
        log.info("stopped")

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal, "SIGTERM")
            loop.add_signal_handler(signal.SIGINT, self._on_stop_signal, "SIGINT")
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            pass

    def _remove_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass

    def _on_stop_signal(self, name: str) -> None:
        if self._stop.is_set():
            log.warning("second_stop_signal_exiting_now", signal=name)
            raise SystemExit(1)
        log.info("stop_requested", signal=name)
        self._stop.set()


# The storage writer thread needs the GIL only briefly per statement; with
# Python's default 5 ms switch interval it waited behind the busy event loop
# for most of each batch (measured: 46k rows/s at 5 ms, 154k at 1 ms, for an
# event loop keeping 88% of its own pace).
GIL_SWITCH_INTERVAL_S = 0.001

# The cyclic garbage collector ran a young collection every 700 container
# allocations; ingesting, each commit's rows and messages make tens of
# thousands of short-lived lists and tuples (freed by reference counting, not
# by the collector), so it ran hundreds of times a second and every older
# collection walked the whole heap of connections while the event loop
# waited. Every 50,000 allocations, with older collections rarer, the same
# ingest bench went from ~190k to ~219k durable frames/s and ACK p99 from
# ~100 to ~60 ms (docs/performance.md). Cycles are still collected.
GC_THRESHOLDS = (50_000, 20, 100)


def run_process(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine function on uvloop when it is installed."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()  # what imports and settings made lives as long as the process: never scan it again
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
