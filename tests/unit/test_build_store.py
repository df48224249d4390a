"""The store a process opens follows its settings: MongoDB when given a URL, SQLite otherwise."""

from __future__ import annotations

from pathlib import Path

from services.components import build_store
from shared.config import Settings
from shared.store.mongo import MongoStore
from shared.store.sqlite import SqliteStore


def test_without_a_mongodb_url_the_store_is_the_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    store = build_store(Settings(data_dir=tmp_path))
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "solewatch.db"


def test_a_mongodb_url_picks_mongodb_and_the_database_in_its_path(tmp_path: Path) -> None:
    named = build_store(Settings(data_dir=tmp_path, mongodb_url="mongodb://127.0.0.1:27999/acme?replicaSet=rs0"))
    unnamed = build_store(Settings(data_dir=tmp_path, mongodb_url="mongodb://127.0.0.1:27999"))
    assert isinstance(named, MongoStore) and isinstance(unnamed, MongoStore)
    assert (named._db.name, unnamed._db.name) == ("acme", "solewatch")
