"""Wedge-masked-difference PCA (PEET / Dynamo / i3 style) and emClarity-style multi-scale SVD.

``wmdpca``: global average -> per-particle wedge-masked differences (see
:mod:`tomohet.methods.linear.features`) -> streaming randomised SVD -> coordinates; the
eigenvolumes come from the wedge-aware regression of the data on the coordinates.
``multiscale``: the same differences band-limited at several length scales, one SVD per
scale, the leading components of each concatenated into one feature vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tomohet.methods.base import ParticleSet, register, seed_of
from tomohet.methods.focus import discovered_focus, is_auto
from tomohet.methods.linear.common import LinearMethod, load_mask
from tomohet.methods.linear.features import (
    FeatureSpec,
    SVDResult,
    difference_features,
    randomized_svd,
)
from tomohet.methods.linear.reference import (
    global_average,
    padded_lowpass,
    project_coordinates,
    regress_ft,
)
from tomohet.physics.linalg import symmetric_eigh

__all__ = ["WMDPCA", "MultiScale", "DEFAULT_LOWPASS_PX"]

# default low-pass (pixels): 2/5 of Nyquist. On the continuous preset at SNR 0.02 per tilt
# a 3-pixel low-pass let noise dominate (|Spearman| 0.27 against 0.93 at 5 pixels).
DEFAULT_LOWPASS_PX = 5.0


class _DifferenceSVD(LinearMethod):
    """Shared pass structure: average, features for each spec, one SVD per spec."""

    lowpass_A: float | None
    highpass_A: float | None
    mask: Any
    mask_radius_A: float | None
    normalise: str
    subtract_average: bool
    max_memory_GB: float
    n_power_iter: int
    cache_dir: str | None

    def _specs(self, particles: ParticleSet, device: torch.device) -> list[FeatureSpec]:
        raise NotImplementedError

    def _svds(self, particles: ParticleSet, device: torch.device,
              n_keep: list[int]) -> tuple[list[FeatureSpec], list[SVDResult]]:
        if self.normalise not in ("none", "scale", "std"):
            raise ValueError(f"{self.name}: normalise must be none, scale or std")
        n = particles.n_particles
        specs = self._specs(particles, device)
        bar = self._bar(2 * n, "average + differences")
        avg = global_average(particles, self.batch_size, device, progress=bar.update)
        stores = difference_features(
            particles, avg, specs, self.batch_size, device, self.normalise,
            self.max_memory_GB, subtract_average=self.subtract_average,
            cache_dir=self.cache_dir, progress=bar.update)
        bar.close()
        self.average_ = avg
        results = []
        for i, (store, k) in enumerate(zip(stores, n_keep, strict=True)):
            try:
                results.append(randomized_svd(store, k, self._generator(31 + i),
                                              n_iter=self.n_power_iter, device=device))
            finally:
                store.close()
        return specs, results

    def _lowpass(self, pixel_size_A: float) -> float:
        """The low-pass in A: ``lowpass_A``, or :data:`DEFAULT_LOWPASS_PX` pixels."""
        return float(self.lowpass_A) if self.lowpass_A else DEFAULT_LOWPASS_PX * pixel_size_A

    def _mask(self, particles: ParticleSet, device: torch.device) -> torch.Tensor:
        """The discovered focus region (``mask="auto"``, the default:
        :func:`~tomohet.methods.focus.discovered_focus`; the sphere when the
        variation is not local), the user's mask, or the soft sphere (``"sphere"`` or None).
        Sets ``focus_mask_`` (None unless a focus was used) and ``discovery_`` (None unless
        ``"auto"``)."""
        o = particles.optics
        self.focus_mask_: torch.Tensor | None = None
        self.discovery_: Any = None
        if is_auto(self.mask):
            k = self.n_clusters or max(2, self.n_components)
            focus, self.discovery_ = discovered_focus(
                particles, k, seed_of(self.random_state), self.batch_size, device)
            if focus is not None:
                self.focus_mask_ = focus
                return focus.to(device)
            return load_mask(None, o.box, o.pixel_size_A, self.mask_radius_A, device)
        return load_mask(self.mask, o.box, o.pixel_size_A, self.mask_radius_A, device)


@register
class WMDPCA(_DifferenceSVD):
    """Wedge-masked-difference PCA of subtomograms (built on the fly from 2D stacks).

    Particles are brought into the reference frame with their missing wedges; each is
    compared with the global average filtered by its own wedge/CTF (PEET's wedge-masked
    difference), band-passed, masked and optionally normalised. ``mask``: ``"auto"`` (the
    default) takes the features only inside the region where discovery finds local
    variation above noise (a small component), and inside the soft sphere when the
    variation is not local (whole subunits, or nothing found), which is then exactly the
    method with ``mask="sphere"`` (or None); else a region-of-interest map or mrc path.
    A randomised, streaming SVD gives ``n_components`` coordinates. ``n_refine`` rounds
    of alternating least squares then correct for the wedge: eigenvolumes regressed on
    the coordinates with every particle's wedge/CTF, and each particle's coordinates
    re-fitted to them through its own wedge (PCA of differences alone scales a particle's
    coordinates by how much of the eigenvolume its wedge sees). ``subtract_average=False``
    is plain PCA of the particles (for contrast).
    """

    name = "wmdpca"
    # lowpass_A None: DEFAULT_LOWPASS_PX pixels. mask "auto" is the default; named here so
    # that a bench cache made before it was the default (no focus) is not reused
    bench_params = {"n_components": 4, "cluster": None, "mask": "auto"}

    def __init__(self, n_components: int = 4, lowpass_A: float | None = None,
                 highpass_A: float | None = None, mask: Any = "auto",
                 mask_radius_A: float | None = None, normalise: str = "none",
                 subtract_average: bool = True, max_memory_GB: float = 2.0,
                 n_power_iter: int = 3, n_refine: int = 1, cache_dir: str | None = None,
                 cluster: str | None = "gmm", n_clusters: int | None = None,
                 max_clusters: int = 8, batch_size: int = 32, device: str | None = None,
                 progress: bool = True, random_state: int | None = None) -> None:
        self.lowpass_A = lowpass_A
        self.n_refine = n_refine
        self.highpass_A = highpass_A
        self.mask = mask
        self.mask_radius_A = mask_radius_A
        self.normalise = normalise
        self.subtract_average = subtract_average
        self.max_memory_GB = max_memory_GB
        self.n_power_iter = n_power_iter
        self.cache_dir = cache_dir
        self._common(n_components, cluster, n_clusters, max_clusters, batch_size, device,
                     progress, random_state)

    def _specs(self, particles: ParticleSet, device: torch.device) -> list[FeatureSpec]:
        o = particles.optics
        self.volume_lowpass_A_ = self._lowpass(o.pixel_size_A)
        return [FeatureSpec.build(o.box, o.pixel_size_A, self.volume_lowpass_A_,
                                  self.highpass_A, self._mask(particles, device), device)]

    def _embed(self, particles: ParticleSet, device: torch.device) -> np.ndarray:
        specs, (res,) = self._svds(particles, device, [self.n_components])
        self.feature_spec_ = specs[0]
        self.svd_ = res
        self.explained_variance_ratio_ = res.explained_ratio.numpy()
        z = res.scores.numpy()
        if self.n_refine > 0 and self.subtract_average:
            z = self._refine(particles, device, z)
        return z

    def _refine(self, particles: ParticleSet, device: torch.device, z: np.ndarray
                ) -> np.ndarray:
        """Alternate wedge-aware regression and projection; -> centred coordinates rotated
        to uncorrelated, decreasing-variance axes (scaled to the SVD's total)."""
        n, o = particles.n_particles, particles.optics
        band = padded_lowpass(o.box, o.pixel_size_A, self._lowpass(o.pixel_size_A), device)
        bar = self._bar(2 * self.n_refine * n, "wedge refinement")
        for _ in range(self.n_refine):
            sol = regress_ft(particles, z, self.batch_size, device, progress=bar.update)
            z = project_coordinates(particles, sol, self.batch_size, device, band=band,
                                    progress=bar.update)
        bar.close()
        z = z - z.mean(0)
        vals_t, vecs_t = symmetric_eigh(torch.as_tensor(np.atleast_2d(np.cov(z.T))))
        vals, vecs = vals_t.numpy(), vecs_t.numpy()
        vecs = vecs[:, np.argsort(vals)[::-1]]
        vecs = vecs * np.where(vecs.sum(0) < 0, -1.0, 1.0)
        return z @ vecs


def default_scales(pixel_size_A: float) -> list[float]:
    """emClarity-like 8, 14, 21 A when the pixel allows (>= 2.5 px), else 2.5, 4, 6 px."""
    scales = [8.0, 14.0, 21.0]
    if min(scales) < 2.5 * pixel_size_A:
        scales = [2.5 * pixel_size_A, 4.0 * pixel_size_A, 6.0 * pixel_size_A]
    return scales


@register
class MultiScale(_DifferenceSVD):
    """emClarity-style multi-scale difference SVD.

    Wedge-masked differences low-passed at each length scale in ``scales_A`` (default
    8, 14, 21 A, or 2.5/4/6 px when the pixel is too large); one SVD per scale; the
    ``components_per_scale`` leading components of each, divided by the scale's total
    standard deviation, are concatenated into the coordinate vector. ``mask`` as in
    :class:`WMDPCA` (default ``"auto"``; ``"sphere"`` for the soft sphere).
    """

    name = "multiscale"
    bench_params = {"components_per_scale": 2, "cluster": None, "mask": "auto"}

    def __init__(self, scales_A: list[float] | None = None, components_per_scale: int = 2,
                 highpass_A: float | None = None, mask: Any = "auto",
                 mask_radius_A: float | None = None, normalise: str = "none",
                 max_memory_GB: float = 2.0, n_power_iter: int = 3,
                 cache_dir: str | None = None, cluster: str | None = "gmm",
                 n_clusters: int | None = None, max_clusters: int = 8, batch_size: int = 32,
                 device: str | None = None, progress: bool = True,
                 random_state: int | None = None) -> None:
        self.scales_A = scales_A
        self.components_per_scale = components_per_scale
        self.lowpass_A = None
        self.highpass_A = highpass_A
        self.mask = mask
        self.mask_radius_A = mask_radius_A
        self.normalise = normalise
        self.subtract_average = True
        self.max_memory_GB = max_memory_GB
        self.n_power_iter = n_power_iter
        self.cache_dir = cache_dir
        self._common(components_per_scale, cluster, n_clusters, max_clusters, batch_size,
                     device, progress, random_state)

    def _scales(self, pixel_size_A: float) -> list[float]:
        scales = self.scales_A or default_scales(pixel_size_A)
        return sorted({max(float(s), 2.0 * pixel_size_A) for s in scales})

    def _specs(self, particles: ParticleSet, device: torch.device) -> list[FeatureSpec]:
        o = particles.optics
        mask = self._mask(particles, device)
        return [FeatureSpec.build(o.box, o.pixel_size_A, s, self.highpass_A, mask, device)
                for s in self._scales(o.pixel_size_A)]

    def _embed(self, particles: ParticleSet, device: torch.device) -> np.ndarray:
        self.n_components = self.components_per_scale
        scales = self._scales(particles.optics.pixel_size_A)
        _, results = self._svds(particles, device, [self.components_per_scale] * len(scales))
        self.scales_used_A_ = scales
        self.volume_lowpass_A_ = min(scales)
        parts, ratios = [], []
        for res in results:
            parts.append(res.scores.numpy() / np.sqrt(max(res.total_variance, 1e-30)))
            ratios.append(res.explained_ratio.numpy())
        self.explained_variance_ratio_ = np.concatenate(ratios)
        self.svds_ = results
        return np.concatenate(parts, axis=1)
