"""Opaque cursors: base64url of the last item's sort key, so clients cannot depend on its form.

A key is one or two integers, each packed in 8 bytes, so a cursor has a fixed
length of the base64url alphabet and the spec can say exactly which strings
are cursors: every string of that shape decodes to some position in the list
(past the end at worst, an empty page), and anything else is a 422 from
validation, like any other malformed parameter.
"""

from __future__ import annotations

import base64
import struct
from typing import Annotated

from fastapi import Query

from services.api.errors import invalid_field

MAX_LIMIT = 1000

_PART = struct.Struct(">Q")
_MAX_KEY = 2**63 - 1  # SQLite and MongoDB integers are signed 64-bit: a larger part means "after everything"


def _pattern(parts: int) -> str:
    length = -(-_PART.size * parts * 4 // 3)  # unpadded base64 of 8 bytes per part: 11 or 22 characters
    return f"^[A-Za-z0-9_-]{{{length}}}$"


_CURSOR_HELP = "`next_cursor` of the previous page"

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Cursor = Annotated[str | None, Query(pattern=_pattern(1), description=_CURSOR_HELP)]
"""A cursor whose key is one integer (an id)."""
PairCursor = Annotated[str | None, Query(pattern=_pattern(2), description=_CURSOR_HELP)]
"""A cursor whose key is two integers (a time and a sequence number)."""


def encode_cursor(*key: int) -> str:
    return base64.urlsafe_b64encode(b"".join(_PART.pack(part) for part in key)).rstrip(b"=").decode()


def decode_cursor(cursor: str, size: int) -> tuple[int, ...]:
    """The key in a cursor made by encode_cursor with `size` integers; 422 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError:
        raw = b""
    if len(raw) != _PART.size * size:  # the Query pattern already refuses these; callers outside routes may not
        raise invalid_field("query", "cursor", msg="invalid cursor")
    return tuple(min(part, _MAX_KEY) for (part,) in _PART.iter_unpack(raw))
