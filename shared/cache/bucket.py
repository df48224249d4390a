"""Token buckets kept as one number (GCRA), the arithmetic every cache adapter shares.

A bucket holds at most `burst` tokens and refills at `rate` tokens a second;
each request takes one. Rather than a count and a refill time, the bucket is
stored as the single time at which it will be full again (the "theoretical
arrival time" of the generic cell rate algorithm): a missing key is a full
bucket, taking a token pushes that time one interval (1/rate) later, and a
token is there as long as the time stays within `burst` intervals from now.
One value read and written per request, so an adapter makes it atomic with
what it already has (a lock, a write transaction, a Lua script).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Floating-point slack when counting tokens: 3 intervals of 0.1 s must be 3 tokens, not 2.999...
EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Allowance:
    """What taking a token from a bucket gave."""

    allowed: bool
    remaining: int  # whole tokens left in the bucket after this request (0 when refused)
    retry_after: float  # seconds until a token is there again (0 when allowed)
    full_after: float  # seconds until the bucket is full again


def take_token(full_at: float | None, now: float, *, rate: float, burst: int) -> tuple[Allowance, float | None]:
    """Take a token from the bucket that is full at `full_at` (None: full now).

    Returns what the caller gets and the bucket's new `full_at` to store, None
    when the request is refused (a refusal costs nothing, so the bucket is unchanged).
    """
    if rate <= 0 or burst < 1:
        raise ValueError("a bucket needs a positive rate and a burst of at least 1")
    interval = 1.0 / rate
    start = now if full_at is None else max(full_at, now)
    new_full_at = start + interval
    used = (new_full_at - now) * rate  # tokens out of the bucket once this one is taken
    if used > burst + EPSILON:
        return Allowance(False, 0, (used - burst) * interval, start - now), None
    return Allowance(True, math.floor(burst - used + EPSILON), 0.0, new_full_at - now), new_full_at
