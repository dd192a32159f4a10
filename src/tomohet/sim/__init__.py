"""Simulator of cryo-ET tilt-series particles with known structural heterogeneity.

Quick use::

    from tomohet.sim import get_preset, simulate
    ds = simulate(get_preset("demo"), seed=0)
    ds.particles, ds.truth, ds.state_volumes, ds.true_volume(0)
    ds.write("sim_out/")
"""

from tomohet.sim.acquisition import TiltScheme
from tomohet.sim.build import build_model
from tomohet.sim.config import SimulationConfig
from tomohet.sim.presets import get_preset, list_presets
from tomohet.sim.render import render_clean
from tomohet.sim.simulate import simulate
from tomohet.sim.states import AtomicStates, HeterogeneityModel, VolumeStates
from tomohet.sim.truth import SimulatedDataset

__all__ = [
    "simulate", "render_clean", "SimulationConfig", "SimulatedDataset", "TiltScheme",
    "get_preset", "list_presets", "build_model", "HeterogeneityModel", "VolumeStates",
    "AtomicStates",
]
