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
    "truth_states", "truth_coords",
]

ParticleSet = TiltSeriesParticles | SubtomogramParticles
# (M,) state indices, (M, C) coordinates -> (M, D, D, D) true volumes
VolumeFn = Callable[[np.ndarray, np.ndarray], torch.Tensor]


def coord_columns(truth: pd.DataFrame) -> list[str]:
    """Continuous-coordinate columns ``c0, c1, ...`` of a truth table, in order."""
    cols = [c for c in truth.columns if len(c) > 1 and c[0] == "c" and c[1:].isdigit()]
    return sorted(cols, key=lambda c: int(c[1:]))


def truth_states(truth: pd.DataFrame) -> np.ndarray:
    """(N,) int64 true state: the ``state`` column when it holds integers (it indexes the
    state volumes), else its values encoded in sorted order; zeros without the column."""
    if "state" not in truth.columns:
        return np.zeros(len(truth), dtype=np.int64)
    s = truth["state"].to_numpy()
    if s.dtype.kind in "iu":
        return s.astype(np.int64)
    return np.unique(s.astype(str), return_inverse=True)[1].reshape(-1).astype(np.int64)


def truth_coords(truth: pd.DataFrame) -> np.ndarray | None:
    """(N, C) the non-constant ``c0, c1, ...`` columns, or None when there are none."""
    cols = [c for c in coord_columns(truth) if truth[c].nunique() > 1]
    return truth[cols].to_numpy(float) if cols else None


def align_truth(truth: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Truth rows reordered to the particle order ``names``; ValueError if any is missing."""
    if "particle" not in truth.columns:
        raise ValueError("truth table has no 'particle' column")
    t = truth.copy()
    t["particle"] = t["particle"].astype(str)
    t = t.drop_duplicates("particle").set_index("particle")
    missing = [n for n in names if n not in t.index]
    if missing:
        raise ValueError(f"{len(missing)} particles have no truth row, e.g. {missing[:3]}")
    return t.loc[list(names)].reset_index()


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
            return torch.as_tensor(self.volume_fn(np.asarray(states), np.asarray(coords)))
        if self.state_volumes is None:
            raise ValueError(f"{self.name}: no true volumes available")
        return torch.as_tensor(self.state_volumes)[torch.as_tensor(np.asarray(states))]

    def true_volumes(self, index: np.ndarray) -> torch.Tensor:
        """(len(index), D, D, D) true volume of each listed particle."""
        idx = np.asarray(index)
        c = self.volume_coords
        return self.volumes_for(self.states[idx], None if c is None else c[idx])

    @property
    def has_volumes(self) -> bool:
        return self.state_volumes is not None or self.volume_fn is not None


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


def load_dataset_dir(path: str | Path) -> BenchDataset:
    """A folder with ``truth.csv``, a particle file and optionally ``state_*.mrc`` maps."""
    from tomohet.io import read_particles

    d = Path(path)
    if not (d / "truth.csv").exists():
        raise ValueError(f"{d}: no truth.csv")
    truth = pd.read_csv(d / "truth.csv")
    candidates = sorted(d.glob("*optimisation_set.star")) + sorted(d.glob("*particles*.star"))
    if not candidates:
        raise ValueError(f"{d}: no particle star file (*optimisation_set.star / *particles*.star)")
    particles = read_particles(candidates[0])
    maps = sorted(d.glob("state_*.mrc")) or sorted((d / "truth").glob("state_*.mrc"))
    vols = None
    if maps:
        import mrcfile

        vols = torch.stack([torch.as_tensor(np.asarray(mrcfile.read(m), dtype=np.float32))
                            for m in maps])
    return BenchDataset(name=d.name, particles=particles, truth=truth, state_volumes=vols)
