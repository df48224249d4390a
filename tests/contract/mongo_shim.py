"""MongoDB for the tests: mongomock-motor's emulator always, a real server when one is given.

The emulator (mongomock under mongomock-motor's AsyncMongoMockClient) runs the
adapter's PyMongo-async code unchanged, with two adjustments made here and
nowhere else:

- its bulk writer predates PyMongo's `sort` option of UpdateOne, and fails on
  the `sort=None` every UpdateOne now passes; the shim accepts None and
  refuses anything else, so a bulk update behaves as mongomock implements it;
- its `aggregate` returns the cursor (Motor's API) where PyMongo's async API
  returns a coroutine giving it; the shim makes it a coroutine;
- a feature mongomock does not implement (it raises NotImplementedError) skips
  the test, naming the feature, instead of failing it or passing silently.

What the emulator cannot check at all (time-series collections, write and read
concerns, real concurrency) is listed in docs/storage.md.

A real server is used when SOLEWATCH_TEST_MONGODB_URL is set: each store gets
a database of its own, with a random name, dropped at the end.
"""

from __future__ import annotations

import functools
import inspect
import os
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from unittest.mock import patch

import pytest
from mongomock.collection import BulkOperationBuilder
from mongomock_motor import AsyncMongoMockClient, AsyncMongoMockCollection
from pymongo import AsyncMongoClient

from shared.store.mongo import MongoStore

MONGODB_URL_VARIABLE = "SOLEWATCH_TEST_MONGODB_URL"

_add_update = BulkOperationBuilder.add_update


def _add_update_without_sort(self: BulkOperationBuilder, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
    if sort is not None:
        raise NotImplementedError("mongomock: UpdateOne with sort in bulk_write")
    return _add_update(self, *args, **kwargs)


_aggregate = AsyncMongoMockCollection.aggregate


async def _aggregate_as_pymongo(self: AsyncMongoMockCollection, *args: Any, **kwargs: Any) -> Any:
    return _aggregate(self, *args, **kwargs)


@contextmanager
def pymongo_bulk_updates() -> Iterator[None]:
    """mongomock's bulk writer, taking PyMongo's UpdateOne(sort=None), and its `aggregate` awaited as PyMongo's."""
    with (
        patch.object(BulkOperationBuilder, "add_update", _add_update_without_sort),
        patch.object(AsyncMongoMockCollection, "aggregate", _aggregate_as_pymongo),
    ):
        yield


def _raised_by_mongomock(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and "/mongomock" in frames[-1].filename


class SkipUnsupported:
    """The store, with every call that reaches a feature mongomock lacks turned into a skip."""

    def __init__(self, store: MongoStore) -> None:
        object.__setattr__(self, "_store", store)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not inspect.iscoroutinefunction(value):
            return value

        @functools.wraps(value)
        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await value(*args, **kwargs)
            except NotImplementedError as exc:
                if not _raised_by_mongomock(exc):
                    raise
                pytest.skip(f"mongomock does not implement what {name}() needs: {exc}")

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._store, name, value)  # on_write


@asynccontextmanager
async def mongomock_store(*, wrap: Callable[[MongoStore], Any] = SkipUnsupported) -> AsyncIterator[Any]:
    """An open MongoStore on a fresh emulator. Positions go to a plain collection:
    mongomock has no time-series collections."""
    with pymongo_bulk_updates():
        store = MongoStore(AsyncMongoMockClient(tz_aware=True), "solewatch", timeseries=False)
        await store.open()
        try:
            yield wrap(store)
        finally:
            await store.close()


def mongodb_url() -> str:
    url = os.environ.get(MONGODB_URL_VARIABLE)
    if not url:
        pytest.skip(f"no MongoDB server: set {MONGODB_URL_VARIABLE} to test against one")
    return url


@asynccontextmanager
async def mongodb_store() -> AsyncIterator[MongoStore]:
    """An open MongoStore on the server at SOLEWATCH_TEST_MONGODB_URL, in a database
    of its own that is dropped at the end; skips when the variable is unset."""
    url = mongodb_url()
    database_name = f"solewatch_test_{uuid.uuid4().hex[:16]}"
    store = MongoStore(url, database_name)
    try:
        await store.open()
        yield store
    finally:
        await store.close()
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        try:
            await client.drop_database(database_name)
        finally:
            await client.close()
