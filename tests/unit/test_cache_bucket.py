"""The token bucket's arithmetic (shared/cache/bucket.py), on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from shared.cache.bucket import Allowance, take_token


class Bucket:
    """One bucket as an adapter keeps it: the stored time, replaced only by an allowed take."""

    def __init__(self, *, rate: float, burst: int):
        self.rate, self.burst, self.now = rate, burst, 1_000.0
        self.full_at: float | None = None

    def take(self) -> Allowance:
        allowance, full_at = take_token(self.full_at, self.now, rate=self.rate, burst=self.burst)
        if full_at is not None:
            self.full_at = full_at
        return allowance


def test_a_full_bucket_gives_its_burst_at_once_then_refuses() -> None:
    bucket = Bucket(rate=2, burst=5)
    taken = [bucket.take() for _ in range(5)]
    assert [a.allowed for a in taken] == [True] * 5
    assert [a.remaining for a in taken] == [4, 3, 2, 1, 0]
    refused = bucket.take()
    assert refused == Allowance(False, 0, pytest.approx(0.5), pytest.approx(2.5))


def test_the_bucket_refills_at_the_rate() -> None:
    bucket = Bucket(rate=2, burst=5)
    for _ in range(5):
        bucket.take()
    bucket.now += 0.4
    assert bucket.take().allowed is False
    bucket.now += 0.1  # half a second: one token back
    assert bucket.take().allowed is True
    assert bucket.take().allowed is False
    bucket.now += 10  # longer than the whole burst takes to come back: full again, not more
    assert [bucket.take().allowed for _ in range(6)] == [True] * 5 + [False]


def test_refusals_cost_nothing() -> None:
    bucket = Bucket(rate=1, burst=1)
    assert bucket.take().allowed
    for _ in range(100):
        assert bucket.take().allowed is False
    bucket.now += 1
    assert bucket.take().allowed  # a client hammering while refused waits no longer than one that waited


def test_a_sustained_rate_is_served_whatever_the_burst() -> None:
    bucket = Bucket(rate=10, burst=3)
    allowed = 0
    for _ in range(1000):  # 100 seconds of one request every 0.1 s
        allowed += bucket.take().allowed
        bucket.now += 0.1
    assert allowed == 1000


def test_fractional_intervals_count_whole_tokens() -> None:
    # 0.1 s intervals add up to 2.9999...: still three tokens, not two.
    bucket = Bucket(rate=10, burst=3)
    assert [bucket.take().allowed for _ in range(4)] == [True, True, True, False]
    assert Bucket(rate=10, burst=3).take().remaining == 2


def test_full_after_says_when_the_whole_burst_is_back() -> None:
    bucket = Bucket(rate=4, burst=8)
    for _ in range(3):
        last = bucket.take()
    assert last.full_after == pytest.approx(0.75)
    bucket.now += 0.75
    assert bucket.take().remaining == 7


@pytest.mark.parametrize(("rate", "burst"), [(0, 5), (-1, 5), (1, 0)])
def test_a_bucket_that_could_never_give_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        take_token(None, 0.0, rate=rate, burst=burst)
