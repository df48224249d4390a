"""Opaque cursors: base64url of the last item's sort key, so clients cannot depend on its form."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

import orjson
from fastapi import HTTPException, Query

MAX_LIMIT = 1000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Cursor = Annotated[str | None, Query(max_length=200, description="`next_cursor` of the previous page")]


def encode_cursor(*key: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).rstrip(b"=").decode()


def decode_cursor(cursor: str, size: int) -> tuple[int, ...]:
    """The key in a cursor made by encode_cursor with `size` integers; 422 for anything else."""
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        key = None
    if (not isinstance(key, list) or len(key) != size
            or not all(type(part) is int and 0 <= part < 2**63 for part in key)):
        raise HTTPException(422, "invalid cursor")
    return tuple(key)
