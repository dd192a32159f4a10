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
* ``normalmode`` -- adenylate kinase (open, residue beads) deformed along a combination of
  its three lowest ANM normal modes (cutoff 15 A, :func:`tomohet.physics.elastic.anm_modes`):
  coordinate ``cJ`` uniform in [-1, 1] scales mode J to an RMS displacement of 6, 4 and
  3 A; box 32 at 3 A/px, 2000 particles (for ``nma`` and ``flow``).

Small-component ladder (a parametrised family; the standard grid is listed):

* ``ladder-mMM-snrS-nN`` -- the 70S ribosome map (4v4r, ~2.5 MDa) with two removable
  components cut from its own density (:class:`~tomohet.sim.states.SurfaceComponentStates`):
  compact surface regions on roughly opposite sides holding ``MM`` % and 0.6 x ``MM`` % of
  the complex's mass (``m05``: 5% and 3%), present independently (A 60%, B 50% of
  particles): states A+B 30%, A 30%, B 20%, core 20%. SNR ``S`` per tilt image at 0 deg
  with the signal measured on the projected density before CTF and exposure filter
  (``snr_reference="projection"``; on the recorded CTF-filtered image that is ~40x lower):
  on this scale the oracle ARI of ``ladder-m05-snr0.3-n300`` (0.97) and of
  ``ladder-m05-snr0.05-n500`` (0.39) match those of an independently simulated held-out
  set of the same kind (0.965, 0.444). ``N`` particles; box 48 at 12 A/px, 41 tilts
  +-60 deg dose-symmetric (3 e/A^2 each), 5% of tilt images missing. Standard grid: MM
  in 02, 05, 10, 30; S in 0.3, 0.1, 0.05, 0.02; N in 300, 1000, 3000 (any values parse,
  e.g. ``ladder-m03-snr0.2-n500``).
* ``ladder1-mMM-snrS-nN`` -- the same with one component of ``MM`` %: 2 states (with it
  60%, core 40%).

``get_preset(name, **overrides)`` accepts any :class:`SimulationConfig` field; a ``box``
override without ``pixel_size_A`` rescales the pixel size to keep the same field of view,
and ``n_tilts`` sets the tilt step over the preset's range.
"""

from __future__ import annotations

import math
import re
from typing import Any

from tomohet.sim.acquisition import TiltScheme
from tomohet.sim.config import SimulationConfig

__all__ = ["list_presets", "get_preset", "SNR_LEVELS", "LADDER_MASSES", "LADDER_SNRS",
           "LADDER_NS", "ladder_name", "parse_ladder_name"]

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


_NORMAL_MODES = [{"kind": "normal_mode", "mode": j, "amplitude_A": a, "cutoff_A": 15.0,
                  "distribution": {"kind": "uniform", "low": -1.0, "high": 1.0}}
                 for j, a in enumerate((6.0, 4.0, 3.0))]


def _normalmode() -> SimulationConfig:
    config = _adk("normalmode", None)
    structure = dict(config.structure, motions=[dict(m) for m in _NORMAL_MODES])
    return config.replace(structure=structure)


def _continuous() -> SimulationConfig:
    return _adk("continuous", None)


def _mixed() -> SimulationConfig:
    return _adk("mixed", [
        {"name": "full", "components": ["LID", "NMP"], "fraction": 0.66},
        {"name": "noLID", "components": ["NMP"], "fraction": 0.30},
        {"name": "noNMP", "components": ["LID"], "fraction": 0.04},
    ])


LADDER_MASSES = (0.02, 0.05, 0.10, 0.30)
LADDER_SNRS = (0.3, 0.1, 0.05, 0.02)
LADDER_NS = (300, 1000, 3000)
LADDER_SECOND = 0.6  # mass of component B relative to A
_LADDER_RE = re.compile(r"^ladder(1?)-m(\d+(?:\.\d+)?)-snr(\d*\.?\d+)-n(\d+)$")
_LADDER_DIRECTIONS = {"A": [1.0, 0.3, 0.2], "B": [-1.0, -0.2, 0.4]}


def ladder_name(mass: float, snr: float, n: int, components: int = 2) -> str:
    """Preset name of a ladder cell, e.g. ``ladder-m05-snr0.1-n1000``."""
    if components not in (1, 2):
        raise ValueError("ladder presets have 1 or 2 components")
    pct = round(100 * float(mass), 2)
    m = f"{int(pct):02d}" if pct == int(pct) else f"{pct:g}"
    return f"ladder{'1' if components == 1 else ''}-m{m}-snr{float(snr):g}-n{int(n)}"


def parse_ladder_name(name: str) -> tuple[int, float, float, int] | None:
    """``(components, mass fraction, snr, n_particles)`` of a ladder name, else None."""
    match = _LADDER_RE.match(name)
    if match is None:
        return None
    one, pct, snr, n = match.groups()
    return (1 if one else 2), float(pct) / 100.0, float(snr), int(n)


def _ladder(components: int, mass: float, snr: float, n: int) -> SimulationConfig:
    if not 0.0 < mass * (1 + LADDER_SECOND * (components - 1)) < 1.0 or snr <= 0 or n < 2:
        raise KeyError(f"ladder cell out of range: mass {mass}, snr {snr}, n {n}")
    comps = {"A": {"direction": _LADDER_DIRECTIONS["A"], "fraction": mass}}
    if components == 2:
        comps["B"] = {"direction": _LADDER_DIRECTIONS["B"], "fraction": LADDER_SECOND * mass}
        states = [{"name": "A+B", "components": ["A", "B"], "fraction": 0.30},
                  {"name": "A", "components": ["A"], "fraction": 0.30},
                  {"name": "B", "components": ["B"], "fraction": 0.20},
                  {"name": "core", "components": [], "fraction": 0.20}]
    else:
        states = [{"name": "A", "components": ["A"], "fraction": 0.6},
                  {"name": "core", "components": [], "fraction": 0.4}]
    return SimulationConfig(
        name=ladder_name(mass, snr, n, components), n_particles=n, box=48, pixel_size_A=12.0,
        structure={"kind": "surface", "map": "4v4r", "components": comps, "states": states},
        snr=snr, snr_reference="projection", tilt=TiltScheme(-60.0, 60.0, 3.0, 2, 3.0),
        n_tomograms=max(2, math.ceil(n / 150)), tomogram_size_A=(4000.0, 4000.0, 1500.0),
        missing_tilt_rate=0.05, defocus_tilt_sd_um=0.05)


def _ladder_grid() -> list[str]:
    return [ladder_name(m, s, n, c) for c in (2, 1) for m in LADDER_MASSES
            for s in LADDER_SNRS for n in LADDER_NS]


_BASES = {"demo": _demo, "discrete": _discrete, "continuous": _continuous, "mixed": _mixed,
          "normalmode": _normalmode}


def list_presets() -> list[str]:
    """Every preset name: ``NAME``, ``NAME-easy``, ``NAME-realistic``, then the standard
    ladder grid (``ladder-...`` and ``ladder1-...``; other ladder values also parse)."""
    return [f"{b}{suffix}" for b in _BASES for suffix in ("", "-easy", "-realistic")] + \
        _ladder_grid()


def get_preset(name: str, **overrides: Any) -> SimulationConfig:
    """A fresh config for preset ``name`` with field ``overrides`` (see module docstring)."""
    ladder = parse_ladder_name(name)
    base, _, level = name.partition("-")
    if ladder is None and (base not in _BASES or (level and level not in SNR_LEVELS)):
        known = [n for n in list_presets() if not n.startswith("ladder")]
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(known)}, and "
                       "ladder-mMM-snrS-nN / ladder1-mMM-snrS-nN (e.g. ladder-m05-snr0.1-n1000)")
    if ladder is not None:
        config = _ladder(*ladder)
        changes: dict[str, Any] = {"name": name}
    else:
        config = _BASES[base]()
        changes = {"name": name, "snr": SNR_LEVELS[level or "easy"]}
    if "box" in overrides and "pixel_size_A" not in overrides:
        changes["pixel_size_A"] = config.pixel_size_A * config.box / int(overrides["box"])
    n_tilts = overrides.pop("n_tilts", None)
    if n_tilts:
        span = config.tilt.tilt_max_deg - config.tilt.tilt_min_deg
        changes["tilt_step_deg"] = span / max(int(n_tilts) - 1, 1)
    changes.update(overrides)
    return config.replace(**changes)
