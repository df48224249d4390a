"""The README's walkthrough works in the directory where its first command already ran."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def shell_commands(section: str) -> list[str]:
    """The commands of the section's ```sh blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def test_the_walkthrough_keeps_its_own_data_directory() -> None:
    text = README.read_text()
    first_command = shell_commands(text)[0]  # line 1 of the README: the demo
    assert "solewatch run" in first_command and "SOLEWATCH_DATA_DIR" not in first_command  # the demo's default
    section = text.split("## A supervisor's first five minutes", 1)[1].split("\n## ", 1)[0]
    [start] = [command for command in shell_commands(section) if command.endswith("solewatch run")]
    settings = dict(word.split("=", 1) for word in shlex.split(start) if re.match(r"[A-Z_]+=", word))
    # Else SOLEWATCH_ADMIN_EMAIL is ignored where the demo created its admin, and step 2 gets a 401.
    assert "SOLEWATCH_ADMIN_EMAIL" in settings
    assert settings.get("SOLEWATCH_DATA_DIR", "./solewatch-data").rstrip("/") not in (
        "./solewatch-data",
        "solewatch-data",
    )
