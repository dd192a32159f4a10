"""Named, deterministic simulation presets.

Each preset exists at two noise levels: ``NAME-easy`` (SNR 0.1 per tilt image at 0
degrees) and ``NAME-realistic`` (SNR 0.02); plain ``NAME`` is the easy one.

* ``demo`` -- tiny: 70S-like ribosome assembly vs 50S alone, box 32 at 15 A/px, 200
  particles, 21 tilts.
* ``discrete`` -- programmable components (Kinman et al. 2025 style) from the 4v4r 50S
  and 30S subunit maps plus a small "factor" (the 2cg9 map) docked on the 50S:
  70S 40%, 70S+factor 25%, 50S 20%, 30S 15%; box 48 at 10 A/px, 2000 particles, 41 tilts,
  states spatially clustered in their tomograms.
* ``continuous`` -- adenylate kinase, linear interpolation open (4AKE, c0 = 0) <-> closed
  (1AKE, c0 = 1), c0 uniform; residue beads, box 32 at 3 A/px, 2000 particles.
* ``mixed`` -- adenylate kinase with the LID (residues 122-159) and NMP (30-59) domains
  as components: full 66%, no-LID 30%, rare no-NMP 4%, each x the open/closed coordinate.

``get_preset(name, **overrides)`` accepts any :class:`SimulationConfig` field; a ``box``
override without ``pixel_size_A`` rescales the pixel size to keep the same field of view,
and ``n_tilts`` sets the tilt step over the preset's range.
"""

from __future__ import annotations

from typing import Any

from tomohet.sim.acquisition import TiltScheme
from tomohet.sim.config import SimulationConfig

__all__ = ["list_presets", "get_preset", "SNR_LEVELS"]

SNR_LEVELS = {"easy": 0.1, "realistic": 0.02}

_RIBOSOME_COMPONENTS = {
    "50S": {"map": "4v4r_50S"},
    "30S": {"map": "4v4r_30S", "contact_with": "50S", "direction": [1.0, 0.0, 0.0]},
}
_ADK_COMPONENTS = {"LID": {"residues": [[None, 122, 159]]},
                   "NMP": {"residues": [[None, 30, 59]]}}
_ADK_MOTION = {"kind": "interpolate", "target": "adk_closed",
               "align_residues": [[None, 1, 29], [None, 60, 121], [None, 160, 214]],
               "distribution": {"kind": "uniform", "low": 0.0, "high": 1.0}}


def _demo() -> SimulationConfig:
    return SimulationConfig(
        name="demo", n_particles=200, box=32, pixel_size_A=15.0,
        structure={"kind": "maps", "components": dict(_RIBOSOME_COMPONENTS), "states": [
            {"name": "70S", "components": ["50S", "30S"], "fraction": 0.5},
            {"name": "50S", "components": ["50S"], "fraction": 0.5}]},
        tilt=TiltScheme(-60.0, 60.0, 6.0, 2, 6.0), n_tomograms=4,
        tomogram_size_A=(4000.0, 4000.0, 1200.0), batch_size=50)


def _discrete() -> SimulationConfig:
    comps = dict(_RIBOSOME_COMPONENTS)
    comps["factor"] = {"map": "2cg9", "contact_with": "50S", "direction": [-1.0, 0.3, 0.0]}
    states = [
        {"name": "70S", "components": ["50S", "30S"], "fraction": 0.40},
        {"name": "70S+factor", "components": ["50S", "30S", "factor"], "fraction": 0.25},
        {"name": "50S", "components": ["50S"], "fraction": 0.20},
        {"name": "30S", "components": ["30S"], "fraction": 0.15},
    ]
    return SimulationConfig(
        name="discrete", n_particles=2000, box=48, pixel_size_A=10.0,
        structure={"kind": "maps", "components": comps, "states": states},
        tilt=TiltScheme(-60.0, 60.0, 3.0, 2, 3.0), n_tomograms=10,
        tomogram_size_A=(5000.0, 5000.0, 1500.0), clustering=0.5, missing_tilt_rate=0.05,
        defocus_tilt_sd_um=0.05)


def _adk(name: str, states: list[dict] | None) -> SimulationConfig:
    structure: dict[str, Any] = {"kind": "atoms", "model": "adk_open", "beads": "residue",
                                 "resolution_A": 6.0, "motions": [dict(_ADK_MOTION)]}
    if states:
        structure["components"] = dict(_ADK_COMPONENTS)
        structure["states"] = states
    return SimulationConfig(
        name=name, n_particles=2000, box=32, pixel_size_A=3.0, structure=structure,
        tilt=TiltScheme(-60.0, 60.0, 3.0, 2, 3.0), defocus_range_um=(1.5, 2.5),
        n_tomograms=10, tomogram_size_A=(2000.0, 2000.0, 800.0), missing_tilt_rate=0.05,
        defocus_tilt_sd_um=0.05)


def _continuous() -> SimulationConfig:
    return _adk("continuous", None)


def _mixed() -> SimulationConfig:
    return _adk("mixed", [
        {"name": "full", "components": ["LID", "NMP"], "fraction": 0.66},
        {"name": "noLID", "components": ["NMP"], "fraction": 0.30},
        {"name": "noNMP", "components": ["LID"], "fraction": 0.04},
    ])


_BASES = {"demo": _demo, "discrete": _discrete, "continuous": _continuous, "mixed": _mixed}


def list_presets() -> list[str]:
    """Every preset name: ``NAME``, ``NAME-easy``, ``NAME-realistic``."""
    return [f"{b}{suffix}" for b in _BASES for suffix in ("", "-easy", "-realistic")]


def get_preset(name: str, **overrides: Any) -> SimulationConfig:
    """A fresh config for preset ``name`` with field ``overrides`` (see module docstring)."""
    base, _, level = name.partition("-")
    if base not in _BASES or (level and level not in SNR_LEVELS):
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(list_presets())}")
    config = _BASES[base]()
    changes: dict[str, Any] = {"name": name, "snr": SNR_LEVELS[level or "easy"]}
    if "box" in overrides and "pixel_size_A" not in overrides:
        changes["pixel_size_A"] = config.pixel_size_A * config.box / int(overrides["box"])
    n_tilts = overrides.pop("n_tilts", None)
    if n_tilts:
        span = config.tilt.tilt_max_deg - config.tilt.tilt_min_deg
        changes["tilt_step_deg"] = span / max(int(n_tilts) - 1, 1)
    changes.update(overrides)
    return config.replace(**changes)
