"""Adapters under the shared contract suites: every cache, bus and store adapter
passes the same tests.

Each port has a table of factories, one per adapter. A factory takes the test's
`tmp_path` and is an async context manager that yields a ready adapter and
cleans up after it (`@asynccontextmanager` over an async generator):

- a cache, started;
- a bus, *not* started: tests subscribe first, then call `start()`, the order
  services follow; the fixture closes it. It must give up on a message after
  `BUS_MAX_ATTEMPTS` deliveries with a backoff of a few tens of milliseconds;
- a store, opened and empty.

Every test of a suite runs once per entry of its table, with the entry's name
as the test id (`test_get_set_delete[memory]`).

To add an adapter (the distributed mode: Redis, RabbitMQ, MongoDB), write its
factory here and add one entry. An adapter needing a server names, in the
port's `*_SERVERS` table, the session fixture of tests/harness/servers.py that
starts one; its factory then also gets that server's URL:

    @asynccontextmanager
    async def make_redis_cache(tmp_path: Path, url: str) -> AsyncIterator[Cache]:
        ...

    CACHE_FACTORIES["redis"] = make_redis_cache
    CACHE_SERVERS["redis"] = "redis_server"

Without the server installed, that adapter's tests skip (scripts/test installs it).

A server shared by many tests needs no cleaning between them for the cache and
the bus: the suites name their keys, topics and consumers with `unique()`. A
store must start empty, so a MongoDB factory opens a database of its own (a
random name) and drops it on the way out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from shared.bus import Bus
from shared.bus.amqp import AmqpBus
from shared.bus.memory import MemoryBus
from shared.cache import Cache
from shared.cache.memory import MemoryCache
from shared.cache.redis import RedisCache
from shared.cache.sqlite import SqliteCache
from shared.store import Store
from shared.store.sqlite import SqliteStore
from tests.contract.mongo_shim import mongodb_store, mongomock_store
from tests.harness.servers import amqp_server, redis_server  # noqa: F401  (the fixtures, registered by import)

# The attempt limit every bus factory configures, so the at-least-once tests
# know when a failing message is given up on.
BUS_MAX_ATTEMPTS = 3


@asynccontextmanager
async def make_memory_cache(tmp_path: Path) -> AsyncIterator[Cache]:
    cache = MemoryCache()
    await cache.start()
    try:
        yield cache
    finally:
        await cache.close()


@asynccontextmanager
async def make_sqlite_cache(tmp_path: Path) -> AsyncIterator[Cache]:
    # The all-in-one mode's persistent cache (sessions, login throttling).
    cache = SqliteCache(tmp_path / "cache.db")
    await cache.start()
    try:
        yield cache
    finally:
        await cache.close()


@asynccontextmanager
async def make_redis_cache(tmp_path: Path, url: str) -> AsyncIterator[Cache]:
    cache = RedisCache(url)
    await cache.start()
    try:
        yield cache
    finally:
        await cache.close()


@asynccontextmanager
async def make_memory_bus(tmp_path: Path) -> AsyncIterator[Bus]:
    bus = MemoryBus(max_attempts=BUS_MAX_ATTEMPTS, first_backoff=0.01)
    try:
        yield bus
    finally:
        await bus.close()


@asynccontextmanager
async def make_amqp_bus(tmp_path: Path, url: str) -> AsyncIterator[Bus]:
    # A prefix per test: its exchanges and queues are its own on the shared broker.
    bus = AmqpBus(url, prefix=f"test-{uuid.uuid4().hex[:8]}", max_attempts=BUS_MAX_ATTEMPTS, first_backoff=0.01)
    try:
        yield bus
    finally:
        await bus.close()


@asynccontextmanager
async def make_sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    # NORMAL: durability across power cuts is not what these tests look at, speed is.
    store = SqliteStore(tmp_path / "contract.db", synchronous="NORMAL")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def make_mongomock_store(tmp_path: Path) -> AsyncIterator[Store]:
    # The MongoDB adapter on mongomock-motor's emulator, always (tests/contract/mongo_shim.py).
    async with mongomock_store() as store:
        yield store


@asynccontextmanager
async def make_mongodb_store(tmp_path: Path) -> AsyncIterator[Store]:
    # The MongoDB adapter on the server SOLEWATCH_TEST_MONGODB_URL names, in a database of
    # its own (random name, dropped at the end); skipped when the variable is unset.
    async with mongodb_store() as store:
        yield store


CACHE_FACTORIES: dict[str, Callable[..., AbstractAsyncContextManager[Cache]]] = {
    "memory": make_memory_cache,
    "sqlite": make_sqlite_cache,
    "redis": make_redis_cache,
}
# Adapters needing a server: the harness fixture whose URL their factory gets after tmp_path.
CACHE_SERVERS: dict[str, str] = {
    "redis": "redis_server",
}
BUS_FACTORIES: dict[str, Callable[..., AbstractAsyncContextManager[Bus]]] = {
    "memory": make_memory_bus,
    "rabbitmq": make_amqp_bus,
}
BUS_SERVERS: dict[str, str] = {
    "rabbitmq": "amqp_server",
}
STORE_FACTORIES: dict[str, Callable[[Path], AbstractAsyncContextManager[Store]]] = {
    "sqlite": make_sqlite_store,
    "mongomock": make_mongomock_store,
    "mongodb": make_mongodb_store,
}


def _server_urls(request: pytest.FixtureRequest, servers: dict[str, str]) -> list[str]:
    """The URL of the harness server this adapter needs, if any (starting it, or skipping when not installed)."""
    server = servers.get(request.param)
    return [request.getfixturevalue(server)] if server else []


@pytest.fixture(params=list(CACHE_FACTORIES))
async def cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cache]:
    async with CACHE_FACTORIES[request.param](tmp_path, *_server_urls(request, CACHE_SERVERS)) as adapter:
        yield adapter


@pytest.fixture(params=list(BUS_FACTORIES))
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """A bus not yet started: subscribe, then `await bus.start()`."""
    async with BUS_FACTORIES[request.param](tmp_path, *_server_urls(request, BUS_SERVERS)) as adapter:
        yield adapter


@pytest.fixture(params=list(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    # A directory of its own: the outbox test pairs this store with a bus that may use tmp_path too.
    async with STORE_FACTORIES[request.param](tmp_path / "store") as adapter:
        yield adapter


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names no other test uses (keys, topics, consumers), for servers shared between tests."""
    run = uuid.uuid4().hex[:10]
    return lambda name: f"contract-{run}-{name}"


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 2.0, interval: float = 0.01
) -> None:
    """Wait until `condition()` holds, failing the test after `timeout` seconds.

    Adapters may deliver or expire asynchronously, so tests wait for an outcome
    rather than assume it is there when a call returns.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition still false after {timeout} s")
        await asyncio.sleep(interval)
