"""Simulated devices: XSole insoles worn by lone workers walking around sites, and trackers of the other
protocols (tracker.py, firmware.py) walking the same routes."""

from services.simulator.device import InsoleBehaviour, SimulatedInsole, SimulationStats
from services.simulator.runner import run_simulation, simulated_imeis

__all__ = [
    "InsoleBehaviour",
    "SimulatedInsole",
    "SimulationStats",
    "run_simulation",
    "simulated_imeis",
]
