"""A benchmark data set: particles, per-particle truth, and the true volumes.

:class:`BenchDataset` is what the oracle, the runner and the report consume. It adapts a
:class:`tomohet.sim.SimulatedDataset` (:func:`from_simulated`) or a folder written by
``SimulatedDataset.write`` (:func:`load_dataset_dir`), and can be built directly in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles

__all__ = [
    "BenchDataset", "from_simulated", "load_dataset_dir", "align_truth", "coord_columns",
    "truth_states", "truth_coords", "truth_key",
]

ParticleSet = TiltSeriesParticles | SubtomogramParticles
# (M,) state indices, (M, C) coordinates -> (M, D, D, D) true volumes
VolumeFn = Callable[[np.ndarray, np.ndarray], torch.Tensor]


def coord_columns(truth: pd.DataFrame) -> list[str]:
    """Continuous-coordinate columns ``c0, c1, ...`` of a truth table, in order."""
    cols = [c for c in truth.columns if len(c) > 1 and c[0] == "c" and c[1:].isdigit()]
    return sorted(cols, key=lambda c: int(c[1:]))


def truth_states(truth: pd.DataFrame) -> np.ndarray:
    """(N,) int64 true state: the ``state`` column when it holds non-negative integers (it
    indexes the state volumes), else its values encoded in sorted order (so a single
    "no discrete state" value such as -1 becomes 0); zeros without the column."""
    return _state_encoding(truth)[0]


def _state_encoding(truth: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """(encoded (N,), raw values (K,) or None when the encoding is the identity)."""
    if "state" not in truth.columns:
        return np.zeros(len(truth), dtype=np.int64), None
    s = truth["state"].to_numpy()
    if s.dtype.kind in "iu" and (len(s) == 0 or s.min() >= 0):
        return s.astype(np.int64), None
    values, enc = np.unique(s if s.dtype.kind in "iuf" else s.astype(str), return_inverse=True)
    return enc.reshape(-1).astype(np.int64), values


def truth_coords(truth: pd.DataFrame) -> np.ndarray | None:
    """(N, C) the non-constant ``c0, c1, ...`` columns, or None when there are none."""
    cols = [c for c in coord_columns(truth) if truth[c].nunique() > 1]
    return truth[cols].to_numpy(float) if cols else None


def truth_key(truth: pd.DataFrame, names: list[str] | pd.Series) -> str:
    """The truth column holding particle names: of ``name`` (the simulator's) and
    ``particle``, the one matching most of ``names``. ValueError if neither exists."""
    cols = [c for c in ("name", "particle") if c in truth.columns]
    if not cols:
        raise ValueError("truth table has neither a 'name' nor a 'particle' column")
    wanted = set(map(str, names))
    return max(cols, key=lambda c: len(wanted & set(truth[c].astype(str).str.strip())))


def align_truth(truth: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Truth rows reordered to the particle order ``names`` (matched by name, see
    :func:`truth_key`); ValueError if any particle is missing."""
    key = truth_key(truth, names)
    t = truth.copy()
    t["_key"] = t[key].astype(str).str.strip()
    t = t.drop_duplicates("_key").set_index("_key")
    missing = [n for n in names if n not in t.index]
    if missing:
        raise ValueError(f"{len(missing)} particles have no truth row (column {key!r}), "
                         f"e.g. {missing[:3]}")
    return t.loc[list(names)].reset_index(drop=True)


@dataclass
class BenchDataset:
    """Particles plus truth aligned to them (row i of ``truth`` is particle i).

    state_volumes (K, D, D, D) true map of each discrete state (or None); volume_fn
    gives the exact true volume for (state, coordinate) pairs of continuous data.
    """

    name: str
    particles: ParticleSet
    truth: pd.DataFrame
    state_volumes: torch.Tensor | None = None
    volume_fn: VolumeFn | None = None
    source: Any = None

    def __post_init__(self) -> None:
        self.truth = align_truth(self.truth, list(self.particles.names))
        if "state" not in self.truth.columns:
            self.truth["state"] = 0

    @property
    def n_particles(self) -> int:
        return self.particles.n_particles

    @property
    def pixel_size_A(self) -> float:
        return float(self.particles.optics.pixel_size_A)

    @property
    def states(self) -> np.ndarray:
        """(N,) int64 true state index (see :func:`truth_states`)."""
        return truth_states(self.truth)

    @property
    def n_states(self) -> int:
        """Number of distinct states present in the truth."""
        return int(len(np.unique(self.states)))

    @property
    def coords(self) -> np.ndarray | None:
        """(N, C) true continuous coordinates, or None (see :func:`truth_coords`)."""
        return truth_coords(self.truth)

    @property
    def volume_coords(self) -> np.ndarray | None:
        """(N, C) every ``c*`` column (constant ones too): the simulator's coordinates, as
        ``volume_fn`` takes them; None without any."""
        cols = coord_columns(self.truth)
        return self.truth[cols].to_numpy(float) if cols and self.coords is not None else None

    @property
    def kind(self) -> str:
        """``discrete`` (states only), ``continuous`` (one state) or ``mixed``."""
        if self.coords is None:
            return "discrete"
        return "continuous" if self.n_states == 1 else "mixed"

    def volumes_for(self, states: np.ndarray, coords: np.ndarray | None) -> torch.Tensor:
        """True volumes for (M,) states and (M, C) coordinates -> (M, D, D, D)."""
        if coords is not None and self.volume_fn is not None:
            raw = _state_encoding(self.truth)[1]
            st = np.asarray(states) if raw is None else raw[np.asarray(states)]
            return torch.as_tensor(self.volume_fn(st, np.asarray(coords)))
        if self.state_volumes is None:
            raise ValueError(f"{self.name}: no true volumes available")
        if coords is not None:
            raise ValueError(f"{self.name}: no per-coordinate volume function for "
                             "continuous truth")
        return torch.as_tensor(self.state_volumes)[torch.as_tensor(np.asarray(states))]

    def true_volumes(self, index: np.ndarray) -> torch.Tensor:
        """(len(index), D, D, D) true volume of each listed particle."""
        idx = np.asarray(index)
        c = self.volume_coords
        return self.volumes_for(self.states[idx], None if c is None else c[idx])

    @property
    def has_volumes(self) -> bool:
        """Whether every particle's true volume is known (continuous data need
        ``volume_fn``)."""
        if self.volume_fn is not None:
            return True
        return self.state_volumes is not None and self.volume_coords is None


def _sim_volume_fn(sim: Any) -> VolumeFn | None:
    """The simulator's per-(state, coordinate) volume function, whatever its name."""
    for attr in ("volumes_at", "volume_at", "volumes_for", "true_volumes_at", "volume_fn"):
        fn = getattr(sim, attr, None)
        if callable(fn):
            return fn
    return None


def from_simulated(sim: Any, name: str) -> BenchDataset:
    """Adapt a :class:`tomohet.sim.SimulatedDataset`."""
    vols = getattr(sim, "state_volumes", None)
    return BenchDataset(
        name=name, particles=sim.particles, truth=sim.truth,
        state_volumes=None if vols is None else torch.as_tensor(np.asarray(vols)),
        volume_fn=_sim_volume_fn(sim), source=sim,
    )


def _volume_fn_from_json(path: Path) -> VolumeFn | None:
    """Rebuild the simulator's heterogeneity model from ``simulation.json`` -> its
    per-(state, coordinate) volume function, or None when that is not possible."""
    try:
        import json

        from tomohet.sim import SimulationConfig, build_model

        config = SimulationConfig.from_dict(json.loads(path.read_text())["config"])
        model = build_model(config.structure, config.box, config.pixel_size_A)
    except Exception:  # no simulator, old or foreign json: fall back to state maps
        return None

    def fn(states: np.ndarray, coords: np.ndarray) -> torch.Tensor:
        s = np.maximum(np.asarray(states, dtype=np.int64).reshape(-1), 0)
        return model.volumes(s, np.asarray(coords, dtype=np.float64).reshape(len(s), -1))

    return fn


def load_dataset_dir(path: str | Path) -> BenchDataset:
    """A folder written by ``SimulatedDataset.write``: ``truth.csv``, a particle star file,
    ``state_*.mrc`` maps and ``simulation.json`` (to rebuild per-coordinate volumes)."""
    from tomohet.io import read_particles

    d = Path(path)
    if not (d / "truth.csv").exists():
        raise ValueError(f"{d}: no truth.csv")
    truth = pd.read_csv(d / "truth.csv")
    candidates = sorted(d.glob("*optimisation_set.star")) + sorted(d.glob("*particles*.star"))
    if not candidates:
        raise ValueError(f"{d}: no particle star file (*optimisation_set.star / *particles*.star)")
    particles = read_particles(candidates[0])
    maps = sorted(d.glob("state_*.mrc"))
    vols = None
    if maps:
        import mrcfile

        vols = torch.stack([torch.as_tensor(np.asarray(mrcfile.read(m), dtype=np.float32))
                            for m in maps])
    fn = _volume_fn_from_json(d / "simulation.json") if (d / "simulation.json").exists() else None
    return BenchDataset(name=d.name, particles=particles, truth=truth, state_volumes=vols,
                        volume_fn=fn)
