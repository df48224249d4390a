"""Nobody reaches a worker's positions round the location visibility (CONTRACT §8): the readers the
REST API, Socket.IO and the webhooks are given offer positions only through `context.positions`
(services/visibility/gate.py), and their code neither reads the store's positions nor a device's
last fix itself. A new reader written the raw way fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from services.context import ServiceContext
from services.visibility.gate import VisiblePositions
from shared.bus.memory import MemoryBus
from shared.cache.memory import MemoryCache
from shared.store import ApiStore
from shared.store.sqlite import SqliteStore
from shared.store.telemetry import PositionHistory
from tests.helpers.api import FakeCommands, api_settings

ROOT = Path(__file__).resolve().parents[2]
READERS = sorted(
    [
        *(ROOT / "services" / "api").rglob("*.py"),
        *(ROOT / "services" / "wss").rglob("*.py"),
        *(ROOT / "services" / "notifications").glob("webhooks*.py"),
        ROOT / "services" / "context.py",
    ]
)
RAW_FIX = {"last_lat_e7", "last_lon_e7", "last_fix_ts"}


def raw_reads(path: Path) -> list[str]:
    """`<something>.positions(...)` calls, `<store>.positions` however used, and a device's own last fix."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "positions":
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node.func)}(...)")
        elif isinstance(node, ast.Attribute) and node.attr == "positions" and "store" in ast.unparse(node.value):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and node.attr in RAW_FIX:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_readers_scanned_are_there() -> None:
    names = {path.name for path in READERS}
    assert {"history.py", "devices.py", "export.py", "server.py", "webhooks_positions.py"} <= names


@pytest.mark.parametrize("path", READERS, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_reader_reads_positions_round_the_gate(path: Path) -> None:
    assert raw_reads(path) == []


def test_the_scan_would_see_the_raw_ways(tmp_path: Path) -> None:
    raw = tmp_path / "raw.py"
    raw.write_text(
        "async def f(context, device):\n"
        "    await context.store.positions(device.id)\n"
        "    read = context.store.positions\n"
        "    return device.last_lat_e7\n"
    )
    assert {int(found.split(":")[1]) for found in raw_reads(raw)} == {2, 3, 4}


def test_the_api_store_port_offers_no_positions() -> None:
    assert PositionHistory not in ApiStore.__mro__
    assert not hasattr(ApiStore, "positions")


async def test_every_context_gets_the_gate_and_the_gate_wants_a_store_that_reads_positions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    context = ServiceContext(api_settings(tmp_path), store, MemoryCache(), MemoryBus(), FakeCommands())
    assert isinstance(context.positions, VisiblePositions)
    with pytest.raises(TypeError):
        VisiblePositions(object())  # type: ignore[arg-type]  # a store that cannot read positions
