"""Run many simulated insoles against a listener in one process."""

from __future__ import annotations

import asyncio
import random
import time

import structlog

from services.simulator.device import (
    InsoleBehaviour,
    InsoleDevice,
    SimulatedInsole,
    SimulationStats,
)
from services.simulator.walk import DEFAULT_SOS_PER_MINUTE, luhn_check_digit

log = structlog.get_logger("solewatch.simulator")

IMEI_PREFIX = "35999900"  # 8-digit TAC reserved here for simulated insoles


def simulated_imeis(count: int, first: int = 0) -> list[str]:
    """`count` valid IMEIs (TAC 35999900, serials from `first`, Luhn digit), always the same."""
    if count < 0 or first < 0 or first + count > 1_000_000:
        raise ValueError("simulated IMEI serials run from 0 to 999999")
    imeis = []
    for serial in range(first, first + count):
        body = f"{IMEI_PREFIX}{serial:06d}"
        imeis.append(body + str(luhn_check_digit(body)))
    return imeis


async def run_simulation(
    host: str,
    port: int,
    insoles: list[SimulatedInsole],
    *,
    rate: float = 0.2,
    duration: float | None = None,
    seed: int | None = None,
    stats: SimulationStats | None = None,
    sos_probability: float = DEFAULT_SOS_PER_MINUTE,
    stop: asyncio.Event | None = None,
    behaviour: InsoleBehaviour | None = None,
) -> SimulationStats:
    """Run `insoles` against an XSole listener until `duration` elapses or `stop` is set.

    `rate` is POSITION frames per second per insole; `sos_probability` the chance
    per minute that an insole raises an SOS; `seed` makes the walks repeatable.
    Cancelling the call hangs every insole up.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    stats = stats if stats is not None else SimulationStats()
    stop = stop if stop is not None else asyncio.Event()
    deadline = time.time() + duration if duration is not None else None
    seeds = random.Random(seed)
    devices = [
        InsoleDevice(
            insole,
            host,
            port,
            rate=rate,
            rng=random.Random(seeds.getrandbits(64)),
            stats=stats,
            stop=stop,
            deadline=deadline,
            sos_per_minute=sos_probability,
            behaviour=behaviour,
        )
        for insole in insoles
    ]
    log.info(
        "simulator.starting",
        host=host,
        port=port,
        insoles=len(devices),
        rate=rate,
        duration=duration,
    )

    async def relay_stop() -> None:
        await stop.wait()
        for device in devices:
            device.wake()

    loop = asyncio.get_running_loop()
    watcher = loop.create_task(relay_stop())
    tasks = [loop.create_task(device.run(), name=f"insole-{device.imei}") for device in devices]
    try:
        await asyncio.gather(*tasks)
    finally:
        watcher.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(watcher, *tasks, return_exceptions=True)
    log.info("simulator.finished", **stats.as_dict())
    return stats
