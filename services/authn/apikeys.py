"""Partner API keys: `sw_` and 40 URL-safe characters, stored as their SHA-256 only."""

from __future__ import annotations

import hashlib
import re
import secrets

API_KEY_PATTERN = re.compile(r"sw_[A-Za-z0-9_-]{40}")
PREFIX_LENGTH = 11  # "sw_" and 8 characters: enough to tell keys apart in a list


def new_api_key() -> str:
    # 30 random bytes are exactly 40 URL-safe characters (240 bits): a plain
    # SHA-256 resists guessing as well as a slow hash would, and costs nothing per request.
    return "sw_" + secrets.token_urlsafe(30)


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def looks_like_api_key(key: str) -> bool:
    return API_KEY_PATTERN.fullmatch(key) is not None
