"""The notifications service's periodic jobs (retention purge, reports' hour totals, weekly digest):
each runs at start and then every `interval` seconds, in a task of its own, until drained."""

from __future__ import annotations

import asyncio
import contextlib

from shared.logging import get_logger

log = get_logger("solewatch.notifications")

DRAIN_TIMEOUT_S = 5.0  # how long a drain waits for a run under way before cancelling it


class PeriodicJob:
    """Subclasses name the job (`name`, for its task and its failure log), set `interval` and
    write `run_once`; a failed run is logged and the next one tries again."""

    name = "periodic-job"
    interval = 60.0

    def __init__(self) -> None:
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> object:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def drain(self) -> None:
        """Let a run under way finish (each writes whole chunks), waiting a bounded time."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), DRAIN_TIMEOUT_S)
        await self.close()

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def rest(self, seconds: float) -> None:
        """Wait `seconds`, or less if the job is drained meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception:  # a backend away: the next run tries again
                log.exception("periodic_job_failed", job=self.name)
            await self.rest(self.interval)
