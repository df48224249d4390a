"""The error responses HAProxy answers itself (compose/haproxy-errors/): the contract's JSON shape.

HAProxy reads each file as a whole HTTP response and sends it as it is, so a
wrong Content-Length or a missing header reaches clients unchanged; what the
real HAProxy does with them is tests/e2e/test_haproxy.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.harness.haproxy import HAPROXY_CFG, with_mounts

# The errors a client can meet from the proxy: routing refusals, no replica, a broken or silent replica.
REQUIRED = {403, 404, 502, 503, 504}


def error_files() -> dict[int, Path]:
    """status -> file, for every `errorfile` line of the configuration, at the path compose.yml mounts."""
    found = re.findall(r"^\s*errorfile\s+(\d+)\s+(\S+)", with_mounts(HAPROXY_CFG.read_text()), flags=re.MULTILINE)
    return {int(code): Path(path) for code, path in found}


def test_every_proxy_error_that_clients_meet_has_a_file_and_is_used_by_default():
    assert REQUIRED <= set(error_files())
    defaults = HAPROXY_CFG.read_text().split("\ndefaults\n", 1)[1].split("\n\n# ---", 1)[0]
    sections = set(re.findall(r"^http-errors\s+(\S+)", HAPROXY_CFG.read_text(), flags=re.MULTILINE))
    assert set(re.findall(r"^\s*errorfiles\s+(\S+)\s*$", defaults, flags=re.MULTILINE)) & sections


@pytest.mark.parametrize("status", sorted(error_files()))
def test_error_file_is_a_json_http_response(status: int):
    raw = error_files()[status].read_bytes()
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, "headers must end with CRLF CRLF"
    status_line, *header_lines = head.decode("ascii").split("\r\n")
    assert re.fullmatch(rf"HTTP/1\.1 {status} [A-Za-z ]+", status_line)
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    detail = json.loads(body)["detail"]
    assert isinstance(detail, str) and detail
    if status == 503:
        assert int(headers["retry-after"]) > 0
