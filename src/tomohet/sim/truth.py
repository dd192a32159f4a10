"""Ground truth of a simulation and the in-memory result, :class:`SimulatedDataset`.

``truth`` has one row per particle, in the particle set's order: ``particle`` (index),
``name``, ``state`` (int; -1 when the model is purely continuous), ``state_name``,
coordinates ``c0, c1, ...``, ``tomogram`` (name), ``tomogram_index``, ``x_A, y_A, z_A``
(position relative to the tomogram centre), the exact orientation as RELION Euler angles
``rot_deg, tilt_deg, psi_deg`` (reference -> tomogram), ``pose_error_deg`` (angle between
the prior handed to methods and the truth), ``n_visible_tilts`` and ``defocus_um`` (the
tomogram's mean defocus).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tomohet.data.particles import TiltSeriesParticles
from tomohet.io.atomic import atomic_write_text
from tomohet.io.mrc import write_mrc
from tomohet.io.writers import write_particles
from tomohet.physics.geometry import matrix_to_euler, rotation_angle_deg
from tomohet.sim.acquisition import TrueAcquisition
from tomohet.sim.config import SimulationConfig
from tomohet.sim.render import render_clean
from tomohet.sim.states import HeterogeneityModel
from tomohet.sim.subtomo import write_subtomograms

__all__ = ["SimulatedDataset", "truth_table"]


def truth_table(acq: TrueAcquisition, model: HeterogeneityModel,
                particles: TiltSeriesParticles) -> pd.DataFrame:
    """Per-particle truth (see module docstring)."""
    n = len(acq.state)
    discrete = getattr(model, "discrete", True)
    state = acq.state.astype(np.int64) if discrete else np.full(n, -1, dtype=np.int64)
    names = [model.state_names[s] for s in acq.state] if discrete else ["continuous"] * n
    euler = matrix_to_euler(torch.as_tensor(acq.rotation)).numpy()
    err = rotation_angle_deg(torch.as_tensor(acq.rotation),
                             torch.as_tensor(np.asarray(particles.rotation))).numpy()
    df = pd.DataFrame({"particle": np.arange(n), "name": particles.names, "state": state,
                       "state_name": names})
    for j in range(acq.coords.shape[1]):
        df[f"c{j}"] = acq.coords[:, j]
    df["tomogram"] = particles.tomo_names
    df["tomogram_index"] = acq.tomogram
    for a, axis in enumerate("xyz"):
        df[f"{axis}_A"] = acq.position_A[:, a]
    df["rot_deg"], df["tilt_deg"], df["psi_deg"] = euler[:, 0], euler[:, 1], euler[:, 2]
    df["pose_error_deg"] = np.nan_to_num(err)
    df["n_visible_tilts"] = acq.visible.sum(1)
    df["defocus_um"] = acq.tomogram_defocus_um[acq.tomogram]
    return df


@dataclass
class SimulatedDataset:
    """A simulated data set and everything known about it.

    ``particles``: what methods see (priors and defocus may carry errors); ``truth``:
    per-particle truth table; ``state_volumes`` (K, D, D, D): one volume per state at the
    reference coordinates; ``model``: the heterogeneity model (true volumes of any
    particle); ``acquisition``: exact per-image values; ``sigma0``: noise sd at 0 degrees.
    """

    particles: TiltSeriesParticles
    truth: pd.DataFrame
    state_volumes: torch.Tensor
    model: HeterogeneityModel
    config: SimulationConfig
    acquisition: TrueAcquisition
    sigma0: float

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    def volumes_at(self, state: np.ndarray, coords: np.ndarray) -> torch.Tensor:
        """True volumes for states (M,) (negative -> 0) and coordinates (M, C) -> (M, D, D, D)."""
        s = np.maximum(np.asarray(state, dtype=np.int64).reshape(-1), 0)
        c = np.asarray(coords, dtype=np.float64).reshape(len(s), -1)
        return self.model.volumes(s, c)

    def true_volumes(self, index: np.ndarray | list[int]) -> torch.Tensor:
        """Exact reference-frame volumes of particles ``index`` (B,) -> (B, D, D, D)."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        return self.model.volumes(self.acquisition.state[idx], self.acquisition.coords[idx])

    def true_volume(self, i: int) -> torch.Tensor:
        """Exact volume of particle ``i`` -> (D, D, D) (for per-particle FSC)."""
        return self.true_volumes([i])[0]

    def clean_images(self, index: np.ndarray | list[int],
                     tilts: np.ndarray | None = None) -> torch.Tensor:
        """Noise-free images of particles (B,) at tilt slots (T',) -> (B, T', D, D)."""
        return render_clean(self.model, self.acquisition, np.asarray(index), self.config, tilts)

    def summary(self) -> dict[str, Any]:
        out = self.particles.summary()
        out.update({"preset": self.config.name, "seed": self.seed, "snr": self.config.snr,
                    "sigma0": self.sigma0,
                    "state_counts": self.truth["state_name"].value_counts().to_dict()})
        return out

    def write(self, out_dir: str | Path, formats: tuple[str, ...] | list[str] = ("relion5", "warp"),
              subtomograms: bool | str = False, progress: bool = False) -> list[Path]:
        """Write particles (first format in ``out_dir``, others in ``out_dir/<format>/``),
        ``truth.csv``, ``state_XX.mrc`` and ``simulation.json``; optionally subtomograms
        (``out_dir/subtomograms/``; ``True`` or ``"pseudo"``: RELION 4 pseudo-subtomograms,
        ``"reconstructed"``: RELION 3.0/3.1-style, see :mod:`tomohet.sim.subtomo`).
        Returns the written paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for i, fmt in enumerate(formats):
            folder = out if i == 0 else out / fmt
            folder.mkdir(parents=True, exist_ok=True)
            paths = write_particles(self.particles, folder / "particles.star", fmt=fmt)
            written.extend(Path(p) for p in paths)
        atomic_write_text(out / "truth.csv", self.truth.to_csv(index=False))
        written.append(out / "truth.csv")
        px = self.config.pixel_size_A
        for k, vol in enumerate(self.state_volumes):
            path = out / f"state_{k:02d}.mrc"
            write_mrc(path, vol.numpy(), px)
            written.append(path)
        atomic_write_text(out / "simulation.json", json.dumps(self.metadata(), indent=2) + "\n")
        written.append(out / "simulation.json")
        if subtomograms:
            style = "pseudo" if subtomograms is True else str(subtomograms)
            written.extend(write_subtomograms(self.particles, out / "subtomograms",
                                              progress=progress, style=style))
        return written

    def metadata(self) -> dict[str, Any]:
        """Parameters, seed, versions and model description (``simulation.json``)."""
        import tomohet

        return {"tomohet_version": tomohet.__version__, "seed": self.seed,
                "config": self.config.to_dict(), "model": self.model.describe(),
                "sigma0": self.sigma0, "state_names": list(self.model.state_names),
                "n_images": int(self.acquisition.visible.sum())}
