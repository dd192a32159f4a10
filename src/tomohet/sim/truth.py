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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tomohet.data.particles import TiltSeriesParticles
from tomohet.physics.geometry import matrix_to_euler, rotation_angle_deg
from tomohet.sim.config import SimulationConfig
from tomohet.sim.states import HeterogeneityModel

__all__ = ["TrueAcquisition", "SimulatedDataset", "truth_table"]


@dataclass
class TrueAcquisition:
    """Exact per-particle (N, ...) and per-image (N, T) values used to form the images."""

    state: np.ndarray  # (N,) int
    coords: np.ndarray  # (N, C)
    tomogram: np.ndarray  # (N,) int
    position_A: np.ndarray  # (N, 3)
    rotation: np.ndarray  # (N, 3, 3) reference -> tomogram
    tilt_rotation: np.ndarray  # (N, T, 3, 3)
    tilt_deg: np.ndarray  # (N, T)
    dose_e_per_A2: np.ndarray  # (N, T)
    defocus_u_A: np.ndarray  # (N, T), depth offset included
    defocus_v_A: np.ndarray
    defocus_angle_deg: np.ndarray
    ctf_scale: np.ndarray
    visible: np.ndarray  # (N, T) bool
    tomogram_defocus_um: np.ndarray  # (n_tomograms,)
    # per tomogram and tilt, at the tomogram centre: (n_tomograms, T)
    tilt_defocus_u_A: np.ndarray
    tilt_defocus_v_A: np.ndarray
    tilt_defocus_angle_deg: np.ndarray


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


def _write_mrc(path: Path, volume: np.ndarray, pixel_size_A: float) -> None:
    try:
        from tomohet.io import write_mrc  # type: ignore[attr-defined]
    except ImportError:  # io not there yet: plain mrcfile
        import mrcfile

        with mrcfile.new(path, overwrite=True) as m:
            m.set_data(np.ascontiguousarray(volume, dtype=np.float32))
            m.voxel_size = pixel_size_A
            m.header.nlabl = 0  # no time-stamped label: identical bytes for identical data
            m.header.label[0] = b""
        return
    write_mrc(path, volume, pixel_size_A)


def _write_text(path: Path, text: str) -> None:
    try:
        from tomohet.io.atomic import atomic_write_text
    except ImportError:
        path.write_text(text)
        return
    atomic_write_text(path, text)


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
        from tomohet.sim.simulate import render_clean

        return render_clean(self.model, self.acquisition, np.asarray(index), self.config, tilts)

    def summary(self) -> dict[str, Any]:
        out = self.particles.summary()
        out.update({"preset": self.config.name, "seed": self.seed, "snr": self.config.snr,
                    "sigma0": self.sigma0,
                    "state_counts": self.truth["state_name"].value_counts().to_dict()})
        return out

    def write(self, out_dir: str | Path, formats: tuple[str, ...] | list[str] = ("relion5", "warp"),
              subtomograms: bool = False, progress: bool = False) -> list[Path]:
        """Write particles (first format in ``out_dir``, others in ``out_dir/<format>/``),
        ``truth.csv``, ``state_XX.mrc`` and ``simulation.json``; optionally subtomograms
        (``out_dir/subtomograms/``). Returns the written paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        from tomohet import io as tio

        if formats and not hasattr(tio, "write_particles"):
            warnings.warn("tomohet.io.write_particles is not available: particle files "
                          "not written", stacklevel=2)
            formats = ()
        if formats:
            for i, fmt in enumerate(formats):
                folder = out if i == 0 else out / fmt
                folder.mkdir(parents=True, exist_ok=True)
                paths = tio.write_particles(  # type: ignore[attr-defined]
                    self.particles, folder / "particles.star", fmt=fmt)
                written.extend(Path(p) for p in (paths or []))
        _write_text(out / "truth.csv", self.truth.to_csv(index=False))
        written.append(out / "truth.csv")
        px = self.config.pixel_size_A
        for k, vol in enumerate(self.state_volumes):
            path = out / f"state_{k:02d}.mrc"
            _write_mrc(path, vol.numpy(), px)
            written.append(path)
        _write_text(out / "simulation.json", json.dumps(self.metadata(), indent=2) + "\n")
        written.append(out / "simulation.json")
        if subtomograms:
            from tomohet.sim.subtomo import write_subtomograms

            written.extend(write_subtomograms(self.particles, out / "subtomograms",
                                              progress=progress))
        return written

    def metadata(self) -> dict[str, Any]:
        """Parameters, seed, versions and model description (``simulation.json``)."""
        import tomohet

        return {"tomohet_version": tomohet.__version__, "seed": self.seed,
                "config": self.config.to_dict(), "model": self.model.describe(),
                "sigma0": self.sigma0, "state_names": list(self.model.state_names),
                "n_images": int(self.acquisition.visible.sum())}
