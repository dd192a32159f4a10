"""What every linear method shares: masks, eigenvolumes, clustering, outputs.

A subclass implements :meth:`LinearMethod._embed` (particles -> coordinates and an
explained-variance record); :meth:`LinearMethod.fit` then estimates the mean and
eigenvolumes by wedge-aware regression of the data on those coordinates
(:func:`~tomohet.methods.linear.reference.regress_volumes`) and clusters the coordinates
when asked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from tomohet.io.atomic import atomic_write_text
from tomohet.io.mrc import load_volume, write_mrc
from tomohet.methods.base import (
    HeterogeneityMethod,
    ParticleSet,
    default_mask,
    resolve_device,
)
from tomohet.methods.focus import is_auto, is_off
from tomohet.methods.linear.outputs import plot_explained_variance
from tomohet.methods.linear.reference import regress_volumes
from tomohet.methods.outputs import save_continuous
from tomohet.methods.trajectories import write_component_series
from tomohet.physics.fourier import ft_to_volume, lowpass_filter, volume_to_ft

__all__ = ["LinearMethod", "load_mask"]

def load_mask(mask: Any, box: int, pixel_size_A: float, radius_A: float | None,
              device: torch.device) -> torch.Tensor:
    """A user mask (mrc path or array, region of interest) or the default soft sphere
    (:func:`tomohet.methods.base.default_mask`, radius ``radius_A`` when given) (D, D, D)."""
    if is_auto(mask):
        raise ValueError("mask 'auto' is resolved by the method (discovered_focus), "
                         "not by load_mask")
    m = None if is_off(mask) else load_volume(mask)
    if m is None:
        return default_mask(box, radius_A, pixel_size_A, device)
    if tuple(m.shape) != (box,) * 3:
        raise ValueError(f"mask shape {tuple(m.shape)} does not match box {box}")
    return m.to(device).clamp(0, 1)


class LinearMethod(HeterogeneityMethod):
    """Base of wmdpca, ccmatrix, multiscale and ppca2d (continuous, optional clusters)."""

    kind = "continuous"
    input_kind = "either"

    # set by subclasses' __init__ through _common()
    n_components: int
    cluster: str | None
    n_clusters: int | None
    max_clusters: int
    batch_size: int
    device: str | None
    progress: bool

    def _common(self, n_components: int, cluster: str | None, n_clusters: int | None,
                max_clusters: int, batch_size: int, device: str | None, progress: bool,
                random_state: int | None) -> None:
        self.n_components = n_components
        self.cluster = cluster
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.random_state = random_state

    def _torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def _bar(self, total: int, what: str) -> tqdm:
        return tqdm(total=total, desc=f"{self.name} {what}", unit="ptcl",
                    disable=not self.progress, leave=False)

    # ------------------------------------------------------------------ subclass hook
    def _embed(self, particles: ParticleSet, device: torch.device) -> np.ndarray:
        """-> (N, K) coordinates; sets ``explained_variance_ratio_`` where meaningful."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fit
    def fit(self, particles: ParticleSet) -> LinearMethod:
        self._check_input(particles)
        if self.n_components < 1:
            raise ValueError(f"{self.name}: n_components must be >= 1")
        device = self._torch_device()
        t0 = time.perf_counter()
        self.explained_variance_ratio_: np.ndarray | None = None
        self.fitted_volumes_: torch.Tensor | None = None  # real (K+1, D, D, D) if _embed has
        self.volume_lowpass_A_: float | None = None  # set by _embed: eigenvolume low-pass
        z = np.asarray(self._embed(particles, device), dtype=np.float64)
        self.latent_ = z
        t1 = time.perf_counter()
        if self.fitted_volumes_ is None:
            bar = self._bar(particles.n_particles, "eigenvolumes")
            vols = regress_volumes(particles, z, self.batch_size, device,
                                   progress=bar.update).cpu()
            bar.close()
        else:
            vols = self.fitted_volumes_.cpu()
        lp = getattr(self, "volume_lowpass_A_", None)
        if lp is not None:  # eigenvolumes carry no information past the features' band
            o = particles.optics
            filt = lowpass_filter(o.box, lp, o.pixel_size_A, 3)
            vols[1:] = ft_to_volume(volume_to_ft(vols[1:]) * filt, o.box)
        self.mean_volume_, self.eigenvolumes_ = vols[0], vols[1:]
        self.pixel_size_A_ = particles.optics.pixel_size_A
        self.labels_, self.cluster_info_ = self._cluster_latent(z)
        self.timings_ = {"embed_s": t1 - t0, "volumes_s": time.perf_counter() - t1}
        return self

    # ------------------------------------------------------------------ outputs
    def _check_same(self, particles: ParticleSet | None) -> None:
        self._fitted_output("latent_", particles)

    def transform(self, particles: ParticleSet | None = None) -> np.ndarray:
        self._check_same(particles)
        return self.latent_.copy()

    def predict(self, particles: ParticleSet | None = None) -> np.ndarray:
        self._check_same(particles)
        if self.labels_ is None:
            raise NotImplementedError(f"{self.name}: fitted without clustering")
        return self.labels_.copy()

    def particle_volumes(self, index: np.ndarray) -> torch.Tensor | None:
        z = torch.as_tensor(self.latent_[np.asarray(index)], dtype=torch.float32)
        return self.mean_volume_[None] + torch.einsum("nk,kzyx->nzyx", z, self.eigenvolumes_)

    def save(self, out_dir: str | Path, particles: ParticleSet) -> None:
        """``latent.csv`` (+ ``assignments.csv`` and ``clusters.json`` when clustered) and
        the input star with latent columns (:func:`tomohet.methods.outputs.save_continuous`);
        ``mean.mrc`` and ``eigenvolume_XX.mrc``; ``component_XX/frame_YY.mrc`` series from
        -2 to +2 standard deviations; ``explained_variance.csv``/``.png``; ``method.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_continuous(self, out, particles)
        px = particles.optics.pixel_size_A
        write_mrc(out / "mean.mrc", self.mean_volume_.numpy(), px)
        for j, vol in enumerate(self.eigenvolumes_):
            write_mrc(out / f"eigenvolume_{j + 1:02d}.mrc", vol.numpy(), px)
        write_component_series(out, self.mean_volume_, self.eigenvolumes_, self.latent_, px)
        ratio = self.explained_variance_ratio_
        if ratio is not None:
            table = pd.DataFrame({"component": np.arange(1, len(ratio) + 1),
                                  "explained_variance_ratio": ratio})
            atomic_write_text(out / "explained_variance.csv", table.to_csv(index=False))
            scales = getattr(self, "scales_used_A_", None)
            groups = None
            if scales and len(ratio) == len(scales) * self.n_components:
                groups = [f"{s:g} A" for s in scales for _ in range(self.n_components)]
                table["group"] = groups
                atomic_write_text(out / "explained_variance.csv", table.to_csv(index=False))
            plot_explained_variance(ratio, out / "explained_variance.png", self.name, groups)
        if self.labels_ is not None:
            atomic_write_text(out / "clusters.json", json.dumps(self.cluster_info_, indent=1))
        info = {"method": self.name, "params": {k: repr(v) if not isinstance(
            v, int | float | str | bool | type(None)) else v for k, v in self.get_params().items()},
            "timings_s": getattr(self, "timings_", {})}
        atomic_write_text(out / "method.json", json.dumps(info, indent=1))
