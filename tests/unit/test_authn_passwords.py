"""argon2 password hashing: verification, rehash on new parameters, the unknown-email path."""

from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher

from services.authn import passwords
from services.authn.passwords import (
    WeakPassword,
    check_new_password,
    hash_password,
    verify_password,
)

CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
STRONGER = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)


class CountingHasher(PasswordHasher):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.verifications = 0

    def verify(self, hash, password):
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture(autouse=True)
def cheap_hasher(monkeypatch):
    monkeypatch.setattr(passwords, "hasher", CHEAP)


async def test_hash_then_verify():
    stored = await hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert (await verify_password(stored, "correct horse")).ok
    assert not (await verify_password(stored, "correct horsE")).ok
    assert (await verify_password(stored, "correct horse")).new_hash is None


async def test_garbage_hash_is_a_mismatch_not_a_crash():
    assert not (await verify_password("not-a-hash", "whatever")).ok
    assert not (await verify_password("", "whatever")).ok


async def test_hash_with_old_parameters_is_rehashed_on_success(monkeypatch):
    old = await hash_password("correct horse")
    monkeypatch.setattr(passwords, "hasher", STRONGER)
    check = await verify_password(old, "correct horse")
    assert check.ok and check.new_hash is not None
    assert "t=2" in check.new_hash and not STRONGER.check_needs_rehash(check.new_hash)
    assert (await verify_password(check.new_hash, "correct horse")) == passwords.PasswordCheck(ok=True)
    assert (await verify_password(old, "wrong")).new_hash is None  # never on a failure


async def test_unknown_account_still_spends_a_verification(monkeypatch):
    counting = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "hasher", counting)
    check = await verify_password(None, "guess")
    assert not check.ok and counting.verifications == 1
    # Not even the dummy's own password opens it.
    assert not (await verify_password(None, "no user has this password")).ok


async def test_default_parameters_run_off_the_event_loop(monkeypatch):
    monkeypatch.setattr(passwords, "hasher", PasswordHasher())  # the real ~50-100 ms cost
    stored = PasswordHasher().hash("correct horse")
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    assert (await verify_password(stored, "correct horse")).ok
    task.cancel()
    assert ticks >= 2


def test_password_policy():
    check_new_password("123456789012")  # CONTRACT §5: at least 12 characters
    for weak in ("", "1234567", "12345678901", "x" * 1025):
        with pytest.raises(WeakPassword):
            check_new_password(weak)
