"""How `run --simulate N --simulate-protocols ...` splits its devices, and what the option accepts."""

from __future__ import annotations

import pytest

from services.cli import _parser
from services.components import split_fleet


def test_the_fleet_is_split_as_evenly_as_can_be():
    assert split_fleet(10, ("xsole", "gt06", "h02", "watch", "teltonika")) == dict.fromkeys(
        ("xsole", "gt06", "h02", "watch", "teltonika"), 2
    )
    assert split_fleet(7, ("xsole", "gt06", "h02")) == {"xsole": 3, "gt06": 2, "h02": 2}
    assert split_fleet(2, ("xsole", "gt06", "h02")) == {"xsole": 1, "gt06": 1}  # none for the last: no empty run
    assert split_fleet(20, ("xsole",)) == {"xsole": 20}
    with pytest.raises(ValueError):
        split_fleet(3, ())


def test_run_simulates_insoles_only_unless_told():
    args = _parser().parse_args(["run", "--simulate", "20"])
    assert args.simulate_protocols == ("xsole",)
    args = _parser().parse_args(["run", "--simulate", "5", "--simulate-protocols", "all"])
    assert args.simulate_protocols == ("xsole", "gt06", "h02", "watch", "teltonika")
    args = _parser().parse_args(["run", "--simulate", "5", "--simulate-protocols", "gt06, watch,gt06"])
    assert args.simulate_protocols == ("gt06", "watch")


@pytest.mark.parametrize("bad", ["", "gt07", "xsole,tk103", ","])
def test_an_unknown_protocol_is_a_usage_error(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["run", "--simulate", "5", "--simulate-protocols", bad])
    assert exit_.value.code == 2
    assert "protocols are some of xsole,gt06,h02,watch,teltonika" in capsys.readouterr().err


def test_simulate_takes_a_protocol():
    assert _parser().parse_args(["simulate"]).protocol == "xsole"
    assert _parser().parse_args(["simulate", "--protocol", "teltonika"]).protocol == "teltonika"
    with pytest.raises(SystemExit):
        _parser().parse_args(["simulate", "--protocol", "tk103"])
