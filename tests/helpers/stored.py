"""What an embedded store's file holds, read with a connection of the test's own.

Telemetry is kept in runs of frames (shared/store/sqlite_runs.py), so tests
that look at the disk directly count frames by decoding them.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from shared.store.messages import TELEMETRY_KIND_OF_TYPE
from shared.store.sqlite_runs import decode_frames


def frames_on_disk(db_path: Path | str) -> Counter[tuple[int, str, int, int]]:
    """How many times each (device id, kind, device ts, seq) is stored."""
    stored: Counter[tuple[int, str, int, int]] = Counter()
    db = sqlite3.connect(db_path)
    try:
        for device_id, frames in db.execute("SELECT device_id, frames FROM frame_runs"):
            for raw, event in decode_frames(frames):
                stored[(device_id, TELEMETRY_KIND_OF_TYPE[raw[3]], event.ts, event.seq)] += 1
    finally:
        db.close()
    return stored
