"""Wedge-masked difference features and a streaming randomised SVD.

A particle's feature is its wedge-masked difference against the global average (PEET's
WMD): ``D_n = Y_n / s_n - W_n mu`` in the reference frame, so the average is filtered by
*this particle's* wedge and CTF before subtracting, and a homogeneous set gives
differences that are noise only. ``D_n`` is divided by the mean weight (flattening the
average CTF^2 envelope), band-passed, Fourier-cropped to the smallest box that holds the
band, brought to real space (cropped from the padded grid) and restricted to the voxels
of a (soft) mask; ``s_n`` is an optional per-particle scale. Features go to a tensor,
or to a memory-mapped file when they would not fit ``max_memory_GB``, and
:func:`randomized_svd` streams over them.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tomohet import parallel
from tomohet.methods.linear.reference import (
    GlobalAverage,
    ParticleSet,
    bandpass,
    crop_rfft,
    iter_reference,
    padded_to_volume,
    working_box,
)
from tomohet.physics.fourier import ft_to_volume, volume_to_ft

__all__ = ["FeatureSpec", "FeatureStore", "difference_features", "randomized_svd",
           "SVDResult", "particle_scale"]


@dataclass
class FeatureSpec:
    """One feature space: band-pass, working box, real-space mask (on the working box)."""

    filt: torch.Tensor  # (D, D, D//2+1) band-pass
    box: int  # full box
    small: int  # working box
    mask: torch.Tensor  # (d, d, d) soft mask on the working box
    keep: torch.Tensor  # (d, d, d) bool: voxels used

    @classmethod
    def build(cls, box: int, pixel_size_A: float, lowpass_A: float | None,
              highpass_A: float | None, mask: torch.Tensor, device: torch.device | str,
              ) -> FeatureSpec:
        """``mask`` (D, D, D) on the full box; resampled to the working box."""
        filt = bandpass(box, pixel_size_A, lowpass_A, highpass_A, device)
        small = working_box(box, pixel_size_A, lowpass_A)
        m = mask.to(device).float()
        if small != box:
            m = ft_to_volume(crop_rfft(volume_to_ft(m), box, small), small).clamp(0, 1)
        keep = m > 0.02
        return cls(filt, box, small, m, keep)

    @property
    def n_features(self) -> int:
        return int(self.keep.sum())

    def apply(self, volumes: torch.Tensor) -> torch.Tensor:
        """Real-space (difference) maps (B, D, D, D) -> features (B, P)."""
        ft = volume_to_ft(volumes.to(self.filt.device).float())
        vol = ft_to_volume(crop_rfft(ft * self.filt, self.box, self.small), self.small)
        return (vol * self.mask)[:, self.keep]

    def of_volumes(self, volumes: torch.Tensor) -> torch.Tensor:
        """Clean volumes (B, D, D, D) in the same feature space (for comparisons)."""
        return self.apply(volumes)

    def to_volume(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, P) back onto the working box (B, d, d, d) (zeros outside)."""
        out = torch.zeros((features.shape[0], *self.keep.shape), device=features.device)
        out[:, self.keep] = features
        return out


def particle_scale(y: torch.Tensor, w: torch.Tensor, avg: GlobalAverage) -> torch.Tensor:
    """Least-squares scale ``s_n`` of each particle against its wedge-filtered average."""
    model = w * avg.mean_ft[None]
    num = (y.conj() * model).real.flatten(1).sum(1)
    den = (model.abs() ** 2).flatten(1).sum(1)
    s = num / den.clamp_min(1e-20)
    return torch.where(s > 1e-3 * s.abs().median().clamp_min(1e-12), s, torch.ones_like(s))


class FeatureStore:
    """(N, P) float32 features in memory, or in a memory-mapped ``.npy`` when large."""

    def __init__(self, n: int, p: int, max_memory_GB: float, folder: str | None = None
                 ) -> None:
        self.shape = (n, p)
        self.path: Path | None = None
        if n * p * 4 > max_memory_GB * 2**30:
            d = Path(folder or tempfile.mkdtemp(prefix="tomohet_wmd_"))
            d.mkdir(parents=True, exist_ok=True)
            self.path = d / f"features_{uuid.uuid4().hex[:8]}.npy"
            self.data: np.ndarray | torch.Tensor = np.lib.format.open_memmap(
                self.path, mode="w+", dtype=np.float32, shape=self.shape)
        else:
            self.data = torch.zeros(self.shape)

    def write(self, idx: np.ndarray, block: torch.Tensor) -> None:
        if isinstance(self.data, np.ndarray):
            self.data[idx] = block.cpu().numpy()
        else:
            self.data[torch.as_tensor(idx)] = block.cpu()

    def block(self, start: int, stop: int, device: torch.device | str) -> torch.Tensor:
        x = self.data[start:stop]
        return torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x).to(device)

    def close(self) -> None:
        if self.path is not None:
            del self.data
            self.path.unlink(missing_ok=True)


def difference_features(particles: ParticleSet, avg: GlobalAverage, specs: list[FeatureSpec],
                        batch_size: int, device: torch.device | str, normalise: str,
                        max_memory_GB: float, subtract_average: bool = True,
                        cache_dir: str | None = None, progress=None) -> list[FeatureStore]:
    """One pass over the data filling one :class:`FeatureStore` per spec.

    normalise: ``"none"``, ``"scale"`` (least-squares scale against the wedge-filtered
    average) or ``"std"`` (each particle's feature vector to unit RMS).
    ``subtract_average=False`` gives plain (non-WMD) features, for comparison.
    """
    n = particles.n_particles
    stores = [FeatureStore(n, s.n_features, max_memory_GB, cache_dir) for s in specs]
    wbar = avg.weight_floor()
    # this rank's row blocks, the ones :func:`randomized_svd` streams (all on one rank)
    mine = parallel.owned_rows(n)
    for idx, y, w in iter_reference(particles, batch_size, device, rows=mine):
        if normalise == "scale":
            y = y / particle_scale(y, w, avg)[:, None, None, None]
        diff = y - w * avg.mean_ft[None] if subtract_average else y
        diff = padded_to_volume(diff / wbar[None], specs[0].box)
        for spec, store in zip(specs, stores, strict=True):
            f = spec.apply(diff)
            if normalise == "std":
                f = f / f.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-20)
            store.write(idx, f)
        if progress is not None:
            progress(len(idx))
    return stores


@dataclass
class SVDResult:
    scores: torch.Tensor  # (N, k) coordinates: U S
    components: torch.Tensor  # (k, P) right singular vectors
    singular_values: torch.Tensor  # (k,)
    explained_variance: torch.Tensor  # (k,) S^2 / (N - 1)
    total_variance: float  # sum of all feature variances
    mean: torch.Tensor  # (P,)

    @property
    def explained_ratio(self) -> torch.Tensor:
        return self.explained_variance / max(self.total_variance, 1e-30)


def _stream(store: FeatureStore, chunk: int, device):
    """This rank's row blocks (:func:`tomohet.parallel.owned_rows`; all on one rank)."""
    n = store.shape[0]
    for s in range(0, n, chunk):
        if parallel.owns(s // chunk):
            yield s, min(s + chunk, n), store.block(s, min(s + chunk, n), device)


def randomized_svd(store: FeatureStore, k: int, generator: torch.Generator,
                   oversample: int = 10, n_iter: int = 3, chunk: int | None = None,
                   device: torch.device | str = "cpu") -> SVDResult:
    """Truncated SVD of the column-centred features, streaming over row blocks.

    Halko, Martinsson & Tropp (2011) range finder with ``n_iter`` power iterations; each
    iteration is two passes over the (possibly memory-mapped) features.

    Under :mod:`tomohet.parallel` each rank streams its own row blocks of ``chunk``
    (default :data:`tomohet.parallel.ROW_BLOCK`) rows: column sums and ``X_c.T @ Q`` are
    summed over ranks, ``X_c @ M`` gathered by rows, so every rank holds the same
    (N, l) range basis and the QR and small SVD run identically everywhere.
    """
    n, p = store.shape
    chunk = chunk or parallel.ROW_BLOCK
    mean = torch.zeros(p, dtype=torch.float64, device=device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for _s, _e, x in _stream(store, chunk, device):
        mean += x.double().sum(0)
    parallel.all_reduce_sum([mean])
    mean = (mean / n).float()
    for _s, _e, x in _stream(store, chunk, device):
        total += (x - mean).double().pow(2).sum()
    parallel.all_reduce_sum([total])
    l_dim = min(k + oversample, n, p)
    omega = torch.randn(p, l_dim, generator=generator).to(device)

    def right(mat: torch.Tensor) -> torch.Tensor:  # X_c @ mat -> (N, l)
        out = torch.zeros((n, mat.shape[1]), device=device)
        for s, e, x in _stream(store, chunk, device):
            out[s:e] = (x - mean) @ mat
        parallel.all_reduce_sum([out])  # rows of other ranks are 0 here: exact
        return out

    def left(mat: torch.Tensor) -> torch.Tensor:  # X_c.T @ mat -> (P, l)
        out = torch.zeros((p, mat.shape[1]), device=device)
        for s, e, x in _stream(store, chunk, device):
            out += (x - mean).T @ mat[s:e]
        parallel.all_reduce_sum([out])
        return out

    q = torch.linalg.qr(right(omega)).Q
    for _ in range(n_iter):
        q = torch.linalg.qr(right(torch.linalg.qr(left(q)).Q)).Q
    bt = left(q)  # (P, l) = (Q^T X_c)^T
    # float64: the small SVD converges on any CPU/BLAS even for nearly rank-deficient bt
    v, s, ut = (x.to(bt.dtype) for x in torch.linalg.svd(bt.double(), full_matrices=False))
    k = min(k, l_dim)
    u_b = ut.T[:, :k]
    comps = v[:, :k].T
    # sign convention: the largest-magnitude loading of each component is positive
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))[:, 0]
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    scores = (q @ u_b) * s[:k] * sign
    return SVDResult(scores=scores.cpu(), components=(comps * sign[:, None]).cpu(),
                     singular_values=s[:k].cpu(), explained_variance=(s[:k] ** 2 / (n - 1)).cpu(),
                     total_variance=float(total) / (n - 1), mean=mean.cpu())
