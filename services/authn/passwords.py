"""Password hashing with argon2id, off the event loop.

One hash or verification costs ~50-100 ms of CPU and 64 MiB of memory, so it
runs on a small dedicated pool: a burst of logins queues there instead of
stalling the event loop or claiming a thread (and 64 MiB) each.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; this bounds what a request can make us hash

# Replaced as a whole (never mutated) when parameters change; tests swap in cheap ones.
hasher = PasswordHasher()

_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="argon2")
_T = TypeVar("_T")
_dummy_hashes: dict[PasswordHasher, str] = {}


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    ok: bool
    new_hash: str | None = None  # set when the stored hash used older parameters: store it


class WeakPassword(ValueError):
    """A new password does not meet the policy."""


def check_new_password(password: str) -> None:
    """Raise WeakPassword unless the password may be set."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


async def _in_pool(fn: Callable[..., _T], *args: object) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)


async def hash_password(password: str) -> str:
    return await _in_pool(hasher.hash, password)


def _verify(current: PasswordHasher, password_hash: str, password: str) -> PasswordCheck:
    try:
        current.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return PasswordCheck(ok=False)
    if current.check_needs_rehash(password_hash):
        return PasswordCheck(ok=True, new_hash=current.hash(password))
    return PasswordCheck(ok=True)


def _verify_nobody(current: PasswordHasher, password: str) -> PasswordCheck:
    dummy = _dummy_hashes.get(current)
    if dummy is None:
        dummy = _dummy_hashes[current] = current.hash("no user has this password")
    _verify(current, dummy, password)
    return PasswordCheck(ok=False)


async def verify_password(password_hash: str | None, password: str) -> PasswordCheck:
    """Check a password against a stored hash.

    With no hash (an unknown email) the same argon2 work is done against a dummy
    hash, so response times do not tell which emails have accounts.
    """
    if password_hash is None:
        return await _in_pool(_verify_nobody, hasher, password)
    return await _in_pool(_verify, hasher, password_hash, password)
