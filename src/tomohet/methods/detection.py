"""Is there heterogeneity above noise, and where? A calibrated test on residual maps.

:mod:`tomohet.methods.discovery` back-projects each particle's residual against the
consensus into a small grid (N maps). Where a component comes and goes, those maps vary
more than noise. This module turns that into a test whose false-positive rate is set by
the data, not by a fixed z threshold:

1. **Scale space.** The component's difference is a coherent blob, so low-passing the maps
   (a Gaussian of sd ``s`` voxels, the matched filter for a blob of that size) before
   taking the voxel variance raises its excess by up to the square root of the voxels it
   covers, where smoothing the *variance* map would not (the excess sits in few voxels of
   the unsmoothed map). Scales ``(0, 0.75, 1.5)`` voxels by default; on the box-48 ladder
   at SNR 0.05 the peak z rose from 4.6 to 7.5-8.7.
2. **Excess-variance z per scale** (as :func:`~tomohet.methods.discovery.variance_map`):
   variance over particles / its median in the same radial shell - 1, in units of its
   robust spread over voxels.
3. **Half-split null.** For a split of the particles into halves A and B, the field
   ``(ratio_A - ratio_B) / 2`` has the sampling noise of the full-data ratio (same
   spatial correlation, same scale) but no heterogeneity (it is in both halves alike).
   Its z-field's maximum over voxels and scales, over ``B`` random splits drawn from the
   particle names, is the null distribution of the statistic ``T`` = the maximum of the
   observed z over voxels and scales. The threshold is its ``1 - alpha`` quantile, which
   controls the chance of declaring anything on data with no heterogeneity (family-wise,
   over voxels and scales) at about ``alpha``; ``p`` = (1 + #{null >= T}) / (B + 1).

All functions are pure: tensors in, tensors out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

__all__ = ["SCALES", "Detection", "gaussian_lowpass", "shell_floor", "robust_z", "shell_index",
           "split_matrix", "detect", "VarianceStats", "support_radius"]

SCALES = (0.0, 0.75, 1.5)


def shell_index(small: int) -> torch.Tensor:
    """(d, d, d) rounded radius of each voxel of a small grid about its centre d // 2."""
    c = torch.arange(small, dtype=torch.float32) - small // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    return torch.round(torch.sqrt(x**2 + y**2 + z**2)).long()


def support_radius(volume: torch.Tensor, small: int, fraction: float = 0.1,
                   margin: float = 1.0) -> float:
    """Radius (small-grid voxels, about the box centre) of the sphere the search for
    heterogeneity is confined to: the farthest voxel of the largest connected region where
    ``volume`` (D, D, D), low-passed to the small grid by Fourier cropping, exceeds
    ``fraction`` of its maximum, plus ``margin`` voxels (the low-pass has already blurred
    the edge outwards by about one); at most d/2 - 1 (also when the volume has no
    positive density).

    A component that comes and goes is part of the particle, so it lies inside the
    consensus's support. The box around a particle is larger than the particle, and the
    residual variance there is not flat (on the box-48 ladder the observed spread of the
    variance ratio is 1.1-1.4x the half-split noise inside the particle and 1.6-2.2x
    towards the box edge); that spread enters the robust z's denominator and the voxels the
    null maximum is taken over. Confined to the particle (radius 7 of 11 small voxels),
    component B of ``ladder-m05-snr0.05-n1000`` rose from z 3.7 (threshold 4.8, 95%
    point of the null 4.4) to 4.7 (threshold 4.5, 95% point 4.2). -> radius."""
    d_max = small / 2 - 1
    v = torch.as_tensor(volume, dtype=torch.float64)
    big = v.shape[-1]
    if small >= big:
        low = v
    else:
        ft = torch.fft.fftshift(torch.fft.fftn(v), dim=(-3, -2, -1))
        lo = big // 2 - small // 2
        crop = ft[lo : lo + small, lo : lo + small, lo : lo + small]
        low = torch.fft.ifftn(torch.fft.ifftshift(crop, dim=(-3, -2, -1))).real
    top = float(low.max())
    if not np.isfinite(top) or top <= 0:
        return float(d_max)
    # the particle is the largest connected blob above the contour; noise speckles of a
    # low-SNR consensus are separate (ladder m30, SNR 0.02: 9 blobs, the particle 575
    # voxels, the others <= 7; without this the radius was the whole box)
    lab, n = ndimage.label((low > fraction * top).numpy())
    sizes = ndimage.sum(np.ones(lab.shape), lab, index=np.arange(1, n + 1))
    blob = lab == int(np.argmax(sizes)) + 1
    r = float(shell_index(small).numpy()[blob].max())
    return float(min(r + margin, d_max))


def gaussian_lowpass(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Maps (N, d, d, d) convolved (periodically) with a Gaussian of sd ``sigma`` voxels,
    as a product with its transform ``exp(-2 pi^2 sigma^2 |k|^2)``. sigma 0: unchanged."""
    if sigma <= 0:
        return maps
    d = maps.shape[-1]
    f = torch.fft.fftfreq(d, dtype=torch.float64)
    kz, ky, kx = torch.meshgrid(f, f, f, indexing="ij")
    g = torch.exp(-2.0 * np.pi**2 * sigma**2 * (kx**2 + ky**2 + kz**2)).to(torch.complex64)
    ft = torch.fft.fftn(maps.float(), dim=(-3, -2, -1)) * g
    return torch.fft.ifftn(ft, dim=(-3, -2, -1)).real


def shell_floor(var: torch.Tensor, inside: torch.Tensor, median_only: bool = False
                ) -> torch.Tensor:
    """The noise floor of a variance map: the median of the voxels inside at the same
    (rounded) radius, per voxel (1 outside ``inside``; ``median_only``: the shell medians
    of any field, 0 outside, not clamped)."""
    shell = shell_index(var.shape[-1])
    floor = torch.zeros_like(var) if median_only else torch.ones_like(var)
    for s in torch.unique(shell[inside]).tolist():
        sel = (shell == s) & inside
        med = var[sel].median()
        floor[sel] = med if median_only else med.clamp_min(1e-30)
    return floor


def robust_z(field: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """(field - median) / (1.4826 MAD) over the voxels inside; 0 outside."""
    vals = field[inside]
    med = vals.median()
    mad = (vals - med).abs().median().clamp_min(1e-12) * 1.4826
    return torch.where(inside, (field - med) / mad, torch.zeros_like(field))


def split_matrix(keys: np.ndarray, n_splits: int) -> np.ndarray:
    """(n_splits, N) bool halves from per-particle 64-bit keys (N, W) uint64: split b is
    bit ``b % 64`` of word ``b // 64`` (random, independent halves; not balanced)."""
    keys = np.atleast_2d(np.asarray(keys, dtype=np.uint64).T).T
    if n_splits > 64 * keys.shape[1]:
        raise ValueError(f"{n_splits} splits need {n_splits // 64 + 1} key words, "
                         f"got {keys.shape[1]}")
    b = np.arange(n_splits)
    words = keys[:, b // 64]
    return ((words >> (b % 64).astype(np.uint64)) & np.uint64(1)).astype(bool).T


@dataclass
class Detection:
    """What :func:`detect` found: ``z`` (d, d, d) the largest z over scales per voxel;
    ``z_scales`` (S, d, d, d); ``variance`` (d, d, d) of the unsmoothed maps;
    ``statistic`` T (max of ``z``); ``null`` (B,) the half-split maxima; ``threshold``
    their ``1 - alpha`` quantile; ``p_value``; ``best_scale`` the scale of the peak;
    ``null_scales`` (S, B) the half-split maxima of each scale alone (None: not kept)."""

    z: torch.Tensor
    z_scales: torch.Tensor
    variance: torch.Tensor
    statistic: float
    null: np.ndarray
    threshold: float
    p_value: float
    scales: tuple[float, ...]
    best_scale: float
    null_scales: np.ndarray | None = None

    @property
    def significant(self) -> bool:
        return self.statistic > self.threshold


def _cube_root(ratio: torch.Tensor) -> torch.Tensor:
    """Wilson-Hilferty: the cube root of a chi-square / dof is close to normal (a
    variance ratio's right tail is longer than its left; the half-split difference is
    symmetric, so the two are compared after this transform)."""
    return ratio.clamp_min(0.0) ** (1.0 / 3.0)


def _blockwise_variances(x: torch.Tensor, w: torch.Tensor, block: int = 4096
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_half_variances` and the variance over all particles, in double precision
    over blocks of ``block`` voxels (x (N, V) in any float type: memory stays at one
    block in double). -> (B, V), (B, V), (V,)."""
    b, v = w.shape[0], x.shape[1]
    va = torch.empty((b, v), dtype=torch.float64)
    vb = torch.empty((b, v), dtype=torch.float64)
    var = torch.empty(v, dtype=torch.float64)
    for lo in range(0, v, block):
        xb = x[:, lo : lo + block].double()
        va[:, lo : lo + block], vb[:, lo : lo + block] = _half_variances(xb, w)
        var[lo : lo + block] = xb.var(0, unbiased=True)
    return va, vb, var


def _null_maxima(fields: torch.Tensor, inside: torch.Tensor) -> np.ndarray:
    """Max over voxels inside of each field (B, V), centred per shell (as the observed
    ratio is, by its floor) and in units of its robust spread: the batched
    ``robust_z(f - shell medians of f)``. -> (B,)."""
    shell = shell_index(inside.shape[-1]).reshape(-1)
    ins = inside.reshape(-1)
    f = fields[:, ins]
    sh = shell[ins]
    out = torch.empty_like(f)
    for s in torch.unique(sh).tolist():
        sel = sh == s
        out[:, sel] = f[:, sel] - f[:, sel].median(1, keepdim=True).values
    med = out.median(1, keepdim=True).values
    mad = (out - med).abs().median(1, keepdim=True).values.clamp_min(1e-12) * 1.4826
    return ((out - med) / mad).max(1).values.numpy()


def _half_variances(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Variances over the particles of each half: x (N, V), w (B, N) 0/1 -> (B, V) x2."""
    na = w.sum(1, keepdim=True).clamp_min(2)
    nb = (x.shape[0] - w.sum(1, keepdim=True)).clamp_min(2)
    s1, s2 = x.sum(0), (x * x).sum(0)
    s1a, s2a = w @ x, w @ (x * x)
    va = (s2a - s1a**2 / na) / (na - 1)
    vb = ((s2 - s2a) - (s1 - s1a) ** 2 / nb) / (nb - 1)
    return va, vb


class VarianceStats:
    """The test's sufficient statistics, added up over blocks of particles.

    Per scale ``s`` of the low-pass, in float64: ``sum x``, ``sum x^2`` over particles
    and ``W @ x``, ``W @ x^2`` with ``W`` (B, N) the half A of each null split, and the
    counts. Memory: 2 (B + 1) S d^3 values, whatever N. Blocks can come in any order and
    from any rank (:meth:`reduce` sums over ranks); :meth:`detection` gives what
    :func:`detect` gives on all the maps at once.

    splits (B, N) bool over all N particles; :meth:`add` takes the columns of its rows.
    """

    def __init__(self, splits: np.ndarray, d: int,
                 scales: tuple[float, ...] = SCALES) -> None:
        self.splits = np.asarray(splits, dtype=bool).reshape(-1, np.shape(splits)[-1])
        self.d, self.scales = int(d), tuple(float(s) for s in scales)
        if not self.scales:
            raise ValueError("VarianceStats needs at least one scale")
        b, v, n_s = self.splits.shape[0], self.d**3, len(self.scales)
        f64 = torch.float64
        self.count = torch.zeros(1, dtype=f64)
        self.count_a = torch.zeros(b, dtype=f64)
        self.s1, self.s2 = torch.zeros((n_s, v), dtype=f64), torch.zeros((n_s, v), dtype=f64)
        self.a1 = torch.zeros((n_s, b, v), dtype=f64)
        self.a2 = torch.zeros((n_s, b, v), dtype=f64)

    def add(self, rows: np.ndarray, maps: torch.Tensor) -> None:
        """Add particles ``rows`` (columns of ``splits``) with maps (len(rows), d, d, d)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if maps.shape != (len(rows), self.d, self.d, self.d):
            raise ValueError(f"maps {tuple(maps.shape)} for {len(rows)} rows of "
                             f"{self.d}^3 voxels")
        w = torch.from_numpy(self.splits[:, rows].astype(np.float64))
        self.count += len(rows)
        self.count_a += w.sum(1)
        for i, s in enumerate(self.scales):
            x = gaussian_lowpass(maps.cpu(), s).reshape(len(rows), -1).double()
            x2 = x * x
            self.s1[i] += x.sum(0)
            self.s2[i] += x2.sum(0)
            self.a1[i] += w @ x
            self.a2[i] += w @ x2

    def reduce(self) -> None:
        """Sum the statistics over ranks (:func:`tomohet.parallel.all_reduce_sum`)."""
        from tomohet import parallel

        parallel.all_reduce_sum([self.count, self.count_a, self.s1, self.s2, self.a1,
                                 self.a2])

    def mean(self, scale: float) -> torch.Tensor | None:
        """Mean map (V,) float64 at ``scale`` (None when it is not one of the scales)."""
        if scale not in self.scales:
            return None
        return self.s1[self.scales.index(scale)] / self.count.clamp_min(1)

    def variances(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """At scale number ``i``: variances (unbiased) over all particles (V,) and over
        the halves A and B of each split (B, V) x2, as :func:`_half_variances`."""
        n = self.count
        var = (self.s2[i] - self.s1[i] ** 2 / n) / (n - 1)
        na = self.count_a[:, None].clamp_min(2)
        nb = (n - self.count_a[:, None]).clamp_min(2)
        va = (self.a2[i] - self.a1[i] ** 2 / na) / (na - 1)
        vb = ((self.s2[i] - self.a2[i]) - (self.s1[i] - self.a1[i]) ** 2 / nb) / (nb - 1)
        return var, va, vb

    def detection(self, alpha: float = 0.01, radius: float | None = None) -> Detection:
        """The calibrated test (:func:`detect`) from the statistics added so far."""
        d = self.d
        inside = shell_index(d) <= (d / 2 - 1 if radius is None else radius)
        null = np.full(self.splits.shape[0], -np.inf)
        per_scale = np.full((len(self.scales), self.splits.shape[0]), -np.inf)
        zs, var0 = [], None
        for i in range(len(self.scales)):
            var_flat, va, vb = self.variances(i)
            var = var_flat.reshape(d, d, d)
            var0 = var.float() if var0 is None else var0
            floor = shell_floor(var, inside)
            zs.append(robust_z(_cube_root(var / floor), inside).float())
            if len(null):
                half_diff = (_cube_root(va / floor.reshape(1, -1))
                             - _cube_root(vb / floor.reshape(1, -1))) / 2.0
                per_scale[i] = _null_maxima(half_diff, inside)
                null = np.maximum(null, per_scale[i])
        z_scales = torch.stack(zs)
        z = z_scales.max(0).values
        stat = float(z.max())
        thr = float(np.quantile(null, 1.0 - alpha)) if len(null) else float("inf")
        p = float((1 + np.sum(null >= stat)) / (len(null) + 1))
        peaks = z_scales.reshape(len(self.scales), -1).max(1).values
        best = float(self.scales[int(peaks.argmax())])
        assert var0 is not None
        return Detection(z, z_scales, var0, stat, null, thr, p, self.scales, best, per_scale)


def detect(maps: torch.Tensor, splits: np.ndarray, scales: tuple[float, ...] = SCALES,
           alpha: float = 0.01, radius: float | None = None, block: int = 1024
           ) -> Detection:
    """The calibrated excess-variance test (module doc) on maps held in memory.

    maps (N, d, d, d); splits (B, N) bool, the half A of each null split (drawn from the
    particle names by the caller); ``radius`` of the search sphere (default d/2 - 1).
    Through :class:`VarianceStats`, ``block`` particles at a time (no sum over ranks:
    the maps are all here).
    """
    stats = VarianceStats(splits, maps.shape[-1], scales)
    for lo in range(0, maps.shape[0], block):
        rows = np.arange(lo, min(lo + block, maps.shape[0]))
        stats.add(rows, maps[lo : lo + block])
    return stats.detection(alpha, radius)

