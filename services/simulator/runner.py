"""Run many simulated insoles against a listener in one process."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator, Sequence
from typing import Protocol

import structlog

from services.simulator.device import (
    InsoleBehaviour,
    InsoleDevice,
    SimulatedInsole,
    SimulationStats,
)
from services.simulator.walk import luhn_check_digit

log = structlog.get_logger("solewatch.simulator")

IMEI_PREFIX = "35999900"  # 8-digit TAC reserved here for simulated insoles

# SOS per minute across all the simulated insoles. At about one an hour per
# insole (the walk's own rate), `solewatch run --simulate 20` often showed no
# alert in a newcomer's first minutes; one a minute, never more than 1.5
# minutes apart (sos_gaps), shows the whole loop within two.
FLEET_SOS_PER_MINUTE = 1.0


def simulated_imeis(count: int, first: int = 0) -> list[str]:
    """`count` valid IMEIs (TAC 35999900, serials from `first`, Luhn digit), always the same."""
    if count < 0 or first < 0 or first + count > 1_000_000:
        raise ValueError("simulated IMEI serials run from 0 to 999999")
    imeis = []
    for serial in range(first, first + count):
        body = f"{IMEI_PREFIX}{serial:06d}"
        imeis.append(body + str(luhn_check_digit(body)))
    return imeis


def sos_gaps(rng: random.Random, per_minute: float) -> Iterator[float]:
    """Seconds before each SOS of the fleet, the first counted from the start.

    Uniform between half and one and a half times the mean gap (60 / per_minute s):
    the rate asked for, yet never a long silence, so the first SOS comes within
    1.5 mean gaps (90 s at one a minute) instead of whenever chance has it.
    """
    if per_minute <= 0:
        raise ValueError("per_minute must be positive")
    mean = 60.0 / per_minute
    while True:
        yield rng.uniform(0.5 * mean, 1.5 * mean)


async def run_simulation(
    host: str,
    port: int,
    insoles: list[SimulatedInsole],
    *,
    rate: float = 0.2,
    duration: float | None = None,
    seed: int | None = None,
    stats: SimulationStats | None = None,
    sos_per_minute: float = FLEET_SOS_PER_MINUTE,
    stop: asyncio.Event | None = None,
    behaviour: InsoleBehaviour | None = None,
    give_up_unreachable: bool = False,
) -> SimulationStats:
    """Run `insoles` against an XSole listener until `duration` elapses or `stop` is set.

    `rate` is POSITION frames per second per insole; `sos_per_minute` the SOS
    raised per minute by the insoles together (one at a time, by an online
    insole picked at random; 0: none); `seed` makes the walks repeatable.
    `give_up_unreachable` ends the run once as many connection attempts as there
    are insoles have failed and none ever opened (nothing listens there: a few
    seconds), instead of retrying until stopped. Cancelling the call hangs every insole up.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    if sos_per_minute < 0:
        raise ValueError("sos_per_minute cannot be negative")
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
            sos_per_minute=0.0,  # the fleet's schedule below raises them instead
            behaviour=behaviour,
        )
        for insole in insoles
    ]
    sos_rng = random.Random(seeds.getrandbits(64))  # drawn after the insoles': their walks stay as they were
    log.info(
        "simulator.starting",
        host=host,
        port=port,
        insoles=len(devices),
        rate=rate,
        duration=duration,
        sos_per_minute=sos_per_minute,
    )

    await run_fleet(
        devices,
        host=host,
        port=port,
        stats=stats,
        stop=stop,
        sos_rng=sos_rng,
        sos_per_minute=sos_per_minute,
        give_up_unreachable=give_up_unreachable,
        name="insole",
    )
    log.info("simulator.finished", **stats.as_dict())
    return stats


class FleetDevice(Protocol):
    """What `run_fleet` drives: a simulated insole or tracker."""

    imei: str

    @property
    def online(self) -> bool: ...
    def wake(self) -> None: ...
    def raise_sos(self) -> None: ...
    async def run(self) -> None: ...


async def run_fleet(
    devices: Sequence[FleetDevice],
    *,
    host: str,
    port: int,
    stats: SimulationStats,
    stop: asyncio.Event,
    sos_rng: random.Random,
    sos_per_minute: float,
    give_up_unreachable: bool,
    name: str,
) -> None:
    """Run every device until all are done, with the fleet's SOS schedule and the give-up rule of
    `run_simulation` (insoles) and `run_tracker_simulation` (trackers) alike."""

    async def relay_stop() -> None:
        await stop.wait()
        for device in devices:
            device.wake()

    async def raise_sos_now_and_then() -> None:
        for gap in sos_gaps(sos_rng, sos_per_minute):
            await asyncio.sleep(gap)  # cancelled when the devices are done
            online = [device for device in devices if device.online]
            sos_rng.choice(online or devices).raise_sos()

    async def give_up_when_unreachable() -> None:
        # Polled: a few attribute reads every 100 ms, for as long as nothing has connected.
        while stats.connections_made == 0:
            if stats.connect_failures >= len(devices):
                log.warning("simulator.unreachable", host=host, port=port, connect_failures=stats.connect_failures)
                stop.set()
                return
            await asyncio.sleep(0.1)

    loop = asyncio.get_running_loop()
    helpers = [loop.create_task(relay_stop())]
    if sos_per_minute > 0 and devices:
        helpers.append(loop.create_task(raise_sos_now_and_then(), name=f"simulator-sos-{name}"))
    if give_up_unreachable and devices:
        helpers.append(loop.create_task(give_up_when_unreachable(), name=f"simulator-unreachable-{name}"))
    tasks = [loop.create_task(device.run(), name=f"{name}-{device.imei}") for device in devices]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in (*helpers, *tasks):
            task.cancel()
        await asyncio.gather(*helpers, *tasks, return_exceptions=True)
