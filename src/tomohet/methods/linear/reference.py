"""Particles in the reference frame: Fourier data and their wedge/CTF weights.

Every linear method works on ``Y_n(q) = sum H^* X`` and ``W_n(q) = sum |H|^2`` sampled
on the reference frame's rfft grid ``q`` of the ``pad`` times padded box (B, P, P,
P//2+1): tilt images are back-projected per particle with their full rotation
(reference -> image), subtomograms are scattered through their rotation (reference ->
subtomogram), both with trilinear weights. (Padding matters: on an unpadded grid the
transform of a box-filling particle varies too fast between voxels for trilinear
insertion, and an exact linear model is recovered only to ~7 degrees.) ``W_n`` is each
particle's missing wedge times its CTF^2 and dose filter, so ``Y_n ~ W_n V_n`` for the
particle's structure ``V_n``.

On top: the global average (``sum Y / sum W``), the regression of the data on per-particle
coordinates (mean + eigenvolumes, solved per Fourier voxel so the wedge is accounted
for), and the helpers to go between rfft grids, filters and masked real-space voxels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from tomohet import parallel
from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.prepare import prepare_batch, prepare_subtomo_batch
from tomohet.physics.fourier import ft_to_volume, hermitian_weights_3d, lowpass_filter
from tomohet.physics.linalg import solve_spd
from tomohet.physics.projection import Backprojector, crop_gridding_corrected
from tomohet.physics.reconstruction import backproject

__all__ = [
    "ParticleSet", "reference_batch", "iter_reference", "GlobalAverage", "global_average",
    "regress_volumes", "regress_ft", "project_coordinates", "bandpass", "crop_rfft",
    "working_box", "padded_to_volume", "subsample_rfft", "padded_lowpass", "PAD",
]

PAD = 2

ParticleSet = TiltSeriesParticles | SubtomogramParticles


def reference_batch(particles: ParticleSet, index: np.ndarray,
                    device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(Y, W) of particles ``index`` in the reference frame, each (B, P, P, P//2+1).

    One grid per particle (:func:`tomohet.physics.reconstruction.backproject` with a
    volume index), in the padded grid's rfft layout.
    """
    bp = Backprojector(particles.optics.box, n_volumes=len(index), pad=PAD, device=device)
    if isinstance(particles, TiltSeriesParticles):
        prep = prepare_batch(particles.batch(index, device), particles.optics)
    else:
        prep = prepare_subtomo_batch(particles.batch(index, device), particles.optics)
    backproject(bp, prep, volume_index=torch.arange(len(index), device=prep.data.device))
    return bp.rfft_grids()


def iter_reference(particles: ParticleSet, batch_size: int, device: torch.device | str = "cpu",
                   rows: np.ndarray | None = None,
                   ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield (index, Y, W) for consecutive batches of the whole set (or of ``rows``)."""
    rows = np.arange(particles.n_particles) if rows is None else np.asarray(rows)
    for start in range(0, len(rows), batch_size):
        idx = rows[start : start + batch_size]
        y, w = reference_batch(particles, idx, device)
        yield idx, y, w


@dataclass
class GlobalAverage:
    """Fourier-space global average and the mean weight, padded rfft layout."""

    mean_ft: torch.Tensor  # complex: sum Y / (sum W + reg)
    mean_weight: torch.Tensor  # real: sum W / N
    n: int

    def weight_floor(self, fraction: float = 0.05) -> torch.Tensor:
        """Mean weight with a floor (``fraction`` of its median positive value)."""
        pos = self.mean_weight[self.mean_weight > 0]
        floor = fraction * (pos.median() if pos.numel() else torch.tensor(1.0))
        return self.mean_weight.clamp_min(float(floor))


def global_average(particles: ParticleSet, batch_size: int, device: torch.device | str,
                   reg: float = 1e-3, progress=None) -> GlobalAverage:
    """One pass: ``sum Y / (sum W + reg * mean W)`` and ``sum W / N``."""
    sy = sw = None
    mine = parallel.owned_rows(particles.n_particles)  # this rank's rows (all on one)
    for idx, y, w in iter_reference(particles, batch_size, device, rows=mine):
        sy = y.sum(0) if sy is None else sy + y.sum(0)
        sw = w.sum(0) if sw is None else sw + w.sum(0)
        if progress is not None:
            progress(len(idx))
    if sy is None or sw is None:  # a rank without rows: zero sums of the right shape
        y, w = reference_batch(particles, np.arange(1), device)
        sy, sw = torch.zeros_like(y[0]), torch.zeros_like(w[0])
    parallel.all_reduce_sum([sy, sw])
    scale = sw[sw > 0].mean() if bool((sw > 0).any()) else torch.tensor(1.0, device=sw.device)
    n = particles.n_particles
    return GlobalAverage(sy / (sw + reg * scale), sw / n, n)


def padded_lowpass(box: int, pixel_size_A: float, lowpass_A: float | None,
                   device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The low-pass on the padded reference grid (``PAD * box``), or None."""
    if lowpass_A is None:
        return None
    return lowpass_filter(PAD * box, lowpass_A, pixel_size_A, 3, device=device)


def bandpass(box: int, pixel_size_A: float, lowpass_A: float | None,
             highpass_A: float | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Raised-cosine band-pass (D, D, D//2+1): keeps ``highpass_A > d > lowpass_A``."""
    f = torch.ones((box, box, box // 2 + 1), device=device)
    if lowpass_A is not None:
        f = f * lowpass_filter(box, lowpass_A, pixel_size_A, 3, device=device)
    if highpass_A is not None:
        f = f * (1 - lowpass_filter(box, highpass_A, pixel_size_A, 3, device=device))
    return f


def working_box(box: int, pixel_size_A: float, lowpass_A: float | None) -> int:
    """Smallest even box whose Nyquist holds the low-pass (and its 2-shell edge)."""
    if lowpass_A is None:
        return box
    shell = box * pixel_size_A / lowpass_A + 2.0
    return int(min(box, 2 * int(np.ceil(shell))))


def crop_rfft(ft: torch.Tensor, box: int, small: int) -> torch.Tensor:
    """Fourier crop of rfft-layout (..., D, D, D//2+1) to (..., d, d, d//2+1)."""
    if small == box:
        return ft
    h = small // 2
    rows = torch.cat([torch.arange(h), torch.arange(box - h, box)]).to(ft.device)
    out = ft.index_select(-3, rows).index_select(-2, rows)[..., : h + 1]
    return out * (small / box) ** 3


def padded_to_volume(ft: torch.Tensor, box: int) -> torch.Tensor:
    """Padded rfft-layout transforms (..., P, P, P//2+1) -> real volumes (..., D, D, D).

    Inverse transform, then the central crop and gridding correction of every
    back-projection (:func:`tomohet.physics.projection.crop_gridding_corrected`).
    """
    return crop_gridding_corrected(ft_to_volume(ft, ft.shape[-3]), box)


def subsample_rfft(ft: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Padded rfft grid -> the box's own rfft grid (every ``pad``-th sample)."""
    return ft[..., ::pad, ::pad, ::pad]


def regress_ft(particles: ParticleSet, coords: np.ndarray, batch_size: int,
              device: torch.device | str, ridge: float = 1e-3, progress=None) -> torch.Tensor:
    """Mean and eigenvolumes that best explain the data given per-particle coordinates.

    Per Fourier voxel q: minimise ``sum_n |Y_n - W_n (mu + U z_n)|^2 / W_n`` over
    ``(mu, U)(q)``, i.e. solve ``(sum_n W_n zt zt^T) u = sum_n Y_n zt`` with
    ``zt = (1, z_n)`` -- the wedge and CTF of every particle are accounted for. ``ridge``
    (relative to the mean weight) regularises voxels with little data. coords (N, K) ->
    padded rfft (K + 1, P, P, P//2+1): index 0 the mean, 1.. the eigenvolumes.
    """
    z = torch.as_tensor(np.asarray(coords, dtype=np.float32), device=device)
    k1 = z.shape[1] + 1
    a = b = None
    for idx, y, w in iter_reference(particles, batch_size, device):
        zt = torch.cat([torch.ones(len(idx), 1, device=device), z[idx]], dim=1)  # (B, K+1)
        outer = (zt[:, :, None] * zt[:, None, :]).reshape(len(idx), k1 * k1)
        # plain matrix products: no (B, voxels, K+1, K+1) intermediate
        a_b = (w.flatten(1).T @ outer).reshape(*w.shape[1:], k1, k1)
        b_b = (y.flatten(1).T @ zt.to(y.dtype)).reshape(*y.shape[1:], k1)
        a = a_b if a is None else a + a_b
        b = b_b if b is None else b + b_b
        if progress is not None:
            progress(len(idx))
    assert a is not None and b is not None
    diag = a.diagonal(dim1=-2, dim2=-1)
    scale = diag[..., 0][diag[..., 0] > 0].mean().clamp_min(1e-12)
    eye = torch.eye(k1, device=device)
    lam = ridge * scale * eye + 1e-6 * scale * eye
    sol = solve_spd(a + lam, b[..., None])  # float64 Cholesky: never fails when singular
    return sol[..., 0].permute(3, 0, 1, 2).contiguous()


def regress_volumes(particles: ParticleSet, coords: np.ndarray, batch_size: int,
                    device: torch.device | str, ridge: float = 1e-3,
                    progress=None) -> torch.Tensor:
    """:func:`regress_ft` as real volumes (K + 1, D, D, D)."""
    sol = regress_ft(particles, coords, batch_size, device, ridge, progress)
    return padded_to_volume(sol, particles.optics.box)


def project_coordinates(particles: ParticleSet, volumes_ft: torch.Tensor, batch_size: int,
                        device: torch.device | str, ridge: float = 1e-6,
                        band: torch.Tensor | None = None, progress=None) -> np.ndarray:
    """Each particle's coordinates given mean and eigenvolumes, its wedge accounted for.

    ``z_n = argmin sum_q |Y_n - W_n (mu + U z)|^2 / W_n``:
    ``(sum_q W_n U U^H) z = Re sum_q U^H (Y_n - W_n mu)`` (a K x K system per particle).
    volumes_ft (K + 1, P, P, P//2+1) as from :func:`regress_ft`; ``band`` (P, P, P//2+1)
    optional Fourier weights (e.g. a low-pass) on the sums -> (N, K).
    """
    mu, u = volumes_ft[0].to(device), volumes_ft[1:].to(device)
    k = u.shape[0]
    herm = hermitian_weights_3d(volumes_ft.shape[-3], device=device)
    if band is not None:
        herm = herm * band.to(device)
    uu = ((u[:, None].conj() * u[None]).real * herm).reshape(k * k, -1)  # (K*K, voxels)
    uh = (u.conj() * herm).reshape(k, -1)
    out = np.zeros((particles.n_particles, k))
    for idx, y, w in iter_reference(particles, batch_size, device):
        g = (w.flatten(1) @ uu.T).reshape(len(idx), k, k)
        r = ((y - w * mu[None]).flatten(1) @ uh.T.to(y.dtype)).real
        lam = ridge * g.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-30)
        g = g + lam[:, None, None] * torch.eye(k, device=device)
        out[idx] = solve_spd(g, r[..., None])[..., 0].cpu().numpy()
        if progress is not None:
            progress(len(idx))
    return out
