"""`solewatch devices add|command` as an operator runs them: each change writes its audit entry as
the `cli` system actor; bad command arguments are refused and queue nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from shared.store.sqlite import SqliteStore

IMEI = "356307042441013"


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"SOLEWATCH_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "devices", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_cli_changes_are_audited_and_bad_arguments_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = cli(data, "add", IMEI, "--name", "Alice")
    assert added.returncode == 0, added.stderr
    queued = cli(data, "command", IMEI, "set-interval", "--args", "003c")
    assert queued.returncode == 0, queued.stderr
    command_id = orjson.loads(queued.stdout)["command_id"]
    for bad in (["set-interval", "--args", "3c"], ["reboot", "--args", "01"], ["vibrate", "--args", "zz"]):
        refused = cli(data, "command", IMEI, *bad)
        assert refused.returncode != 0 and "solewatch:" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr

    store = SqliteStore(data / "solewatch.db")
    await store.open()
    try:
        device = await store.device_by_imei(IMEI)
        assert device is not None
        [command] = await store.device_commands(device.id)
        assert (command.id, command.args) == (command_id, b"\x00\x3c")
        assert command.expires_at is not None and command.expires_at - command.created_at == 86400
        log = list(reversed(await store.audit_log(device.tenant_id)))
        assert [(r.entry.action, r.entry.target_id, r.entry.actor.type, r.entry.actor.label) for r in log] == [
            ("device.create", IMEI, "system", "cli"),
            ("device.command", IMEI, "system", "cli"),
        ]
        assert log[1].entry.detail == {"command": "set-interval", "args": "003c", "id": command_id}
    finally:
        await store.close()


async def test_cli_registers_a_tracker_with_its_protocol_and_model_and_no_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = cli(data, "add", "4209951530", "--name", "Gate", "--protocol", "h02", "--model", "Sinotrack ST-901")
    assert added.returncode == 0, added.stderr
    shown = orjson.loads(added.stdout)
    assert "token" not in shown and (shown["protocol"], shown["model"]) == ("h02", "Sinotrack ST-901")
    # The protocol's IMEI rule, and an unknown protocol, refused plainly.
    for bad in (["4209951531", "--protocol", "gt06"], ["356307042441013", "--protocol", "tk103"]):
        refused = cli(data, "add", *bad, "--name", "x")
        assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr

    store = SqliteStore(data / "solewatch.db")
    await store.open()
    try:
        device = await store.device_by_imei("4209951530")
        assert device is not None and (device.protocol, device.model, device.token_hash) == (
            "h02",
            "Sinotrack ST-901",
            b"",
        )
        assert await store.device_by_imei("4209951531") is None
    finally:
        await store.close()
