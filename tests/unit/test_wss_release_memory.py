"""release_free_memory runs on the event loop after every burst of abandoned handshakes:
looking up libc (a subprocess) must happen once per process, not once per burst."""

from __future__ import annotations

import ctypes.util

import pytest

from services.wss import handshakes


def test_libc_is_looked_up_once_across_bursts(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []
    real_find_library = ctypes.util.find_library

    def counting_find_library(name: str) -> str | None:
        lookups.append(name)
        return real_find_library(name)

    monkeypatch.setattr(ctypes.util, "find_library", counting_find_library)
    cache_clear = getattr(handshakes._malloc_trim, "cache_clear", None)
    if cache_clear is not None:
        cache_clear()

    for _ in range(3):
        handshakes.release_free_memory()

    assert len(lookups) <= 1
