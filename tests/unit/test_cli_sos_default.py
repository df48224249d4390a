"""The first demo shows an SOS: `solewatch run --simulate 20` raises one within two minutes, always."""

from __future__ import annotations

import random
import statistics
from itertools import islice

import pytest

from services.cli import _parser
from services.simulator.runner import sos_gaps

FIRST_MINUTES = 120.0  # seconds a newcomer gives the demo before deciding nothing happens


@pytest.mark.parametrize("command", [["run", "--simulate", "20"], ["simulate"]])
def test_the_default_rate_raises_the_first_sos_within_two_minutes(command: list[str]) -> None:
    rate = _parser().parse_args(command).sos_per_minute
    assert rate > 0
    firsts = [next(sos_gaps(random.Random(seed), rate)) for seed in range(2000)]
    assert max(firsts) <= FIRST_MINUTES
    assert 60.0 / rate * 1.5 <= FIRST_MINUTES  # the bound itself, not just 2,000 draws of it


def test_the_schedule_keeps_the_rate_asked_for() -> None:
    gaps = list(islice(sos_gaps(random.Random(7), 4.0), 20_000))  # four a minute: 15 s apart on average
    assert statistics.fmean(gaps) == pytest.approx(15.0, rel=0.02)
    assert 7.5 <= min(gaps) and max(gaps) <= 22.5


def test_the_rate_is_an_option_of_both_commands() -> None:
    assert _parser().parse_args(["run", "--simulate", "5", "--sos-per-minute", "0"]).sos_per_minute == 0
    assert _parser().parse_args(["simulate", "--sos-per-minute", "2.5"]).sos_per_minute == 2.5
    for wrong in ("-1", "nan", "inf"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["run", "--sos-per-minute", wrong])
