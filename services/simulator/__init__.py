"""Simulated XSole insoles: lone workers walking around sites, speaking XSole v1 to a listener."""

from services.simulator.device import InsoleBehaviour, SimulatedInsole, SimulationStats
from services.simulator.runner import run_simulation, simulated_imeis

__all__ = [
    "InsoleBehaviour",
    "SimulatedInsole",
    "SimulationStats",
    "run_simulation",
    "simulated_imeis",
]
