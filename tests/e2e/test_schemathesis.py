"""schemathesis over the whole OpenAPI spec of `solewatch run`: every operation, every check, stateful links.

The spec is what partners build on, so every answer must be one it documents,
in the shape it documents. This runs the schemathesis CLI, as an attacker or a
partner would, against a real `solewatch run` subprocess: the examples,
coverage, fuzzing and stateful phases (links inferred from the spec and from
the answers), with `--checks all`, bounded by the examples per operation
(25 random ones per operation in the fuzzing phase: tests/e2e/schemathesis.toml).
That file also holds its authentication and the two groups of operations whose
checks no JSON Schema can express.

SOLEWATCH_SCHEMATHESIS_SEED (a number) replays or varies a run; the default
seed keeps the suite reproducible.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.process import SolewatchProcess

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@acme.example", "correct horse battery staple"
EXAMPLES_PER_OPERATION = 50
DEFAULT_SEED = "20261207"


@pytest.mark.timeout(600)
def test_every_answer_is_one_the_spec_documents(tmp_path: Path) -> None:
    if importlib.util.find_spec("schemathesis") is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    server = SolewatchProcess(
        tmp_path / "data",
        "run",
        log_path=tmp_path / "run.log",
        env={
            "SOLEWATCH_ADMIN_EMAIL": ADMIN_EMAIL,
            "SOLEWATCH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "SOLEWATCH_JWT_SECRET": "schemathesis-run-" + "s" * 32,
            # The fuzzer fails thousands of logins from 127.0.0.1, and then logs in as
            # the admin from there: the address budget would rightly lock it out.
            "SOLEWATCH_LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000",
        },
    ).start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(CONFIG),
                "run",
                f"http://127.0.0.1:{server.http_port}/api/v1/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--seed",
                os.environ.get("SOLEWATCH_SCHEMATHESIS_SEED", DEFAULT_SEED),
                "--request-timeout",
                "30",
                "--no-color",
            ],
            # Its working directory is the temporary one: no .hypothesis or report lands in the repository.
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
            env={
                **os.environ,
                "SOLEWATCH_TEST_ADMIN_EMAIL": ADMIN_EMAIL,
                "SOLEWATCH_TEST_ADMIN_PASSWORD": ADMIN_PASSWORD,
            },
        )
    finally:
        server.stop_quietly()
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-30_000:]
    summary = report[report.rfind("SUMMARY") :]
    print(summary)  # operations, phases, test cases generated: shown by pytest -rP
    assert "Tested: " in summary and "Errored" not in summary, summary
