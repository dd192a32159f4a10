"""Dynamo-style constrained cross-correlation matrix and its eigen-decomposition.

For particles ``i, j`` in the reference frame, each is filtered by the other's wedge
before correlating (constrained CC)::

    CC_ij = sum_q M_i M_j F_i F_j^* / sqrt(sum_q M_j |F_i|^2 * sum_q M_i |F_j|^2)

with ``F_n = Y_n / mean W`` band-passed on the box's own grid (``Y_n`` already vanishes
outside particle n's wedge, so the numerator is a plain Gram matrix) and ``M_n`` the
binary wedge/CTF support.
All pairs are three (N x P) x (P x N) products; the double-centred matrix's leading
eigenvectors times sqrt(eigenvalue) are the coordinates (classical MDS / kernel PCA).
Memory grows as N^2: sets whose matrices would not fit ``max_memory_GB`` are refused
with a pointer to wmdpca.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.methods.base import ParticleSet, register
from tomohet.methods.linear.common import LinearMethod
from tomohet.methods.linear.features import FeatureStore, randomized_svd
from tomohet.methods.linear.reference import (
    bandpass,
    global_average,
    iter_reference,
    padded_to_volume,
    subsample_rfft,
)
from tomohet.methods.linear.wmdpca import DEFAULT_LOWPASS_PX
from tomohet.physics.fourier import hermitian_weights_3d, volume_to_ft
from tomohet.physics.linalg import symmetric_eigh

__all__ = ["CCMatrix", "required_memory_GB"]


def required_memory_GB(n: int, n_coeffs: int) -> float:
    """Peak bytes of the CC matrix computation: ~4 N x N and 3 N x P float32 arrays."""
    return 4.0 * (4 * n * n + 3 * n * 2 * n_coeffs) / 2**30


@register
class CCMatrix(LinearMethod):
    """Pairwise constrained cross-correlation matrix (Dynamo), eigen-decomposed.

    ``normalise="cc"``: Dynamo's constrained CC of the particles; ``"overlap"``: of their
    wedge-masked differences from the average, the inner product on the common support
    scaled by its size (an estimate of ``<V_i - mu, V_j - mu>`` unbiased by the wedges:
    on linear data its eigenvectors are the principal components).
    ``lowpass_A`` None: 5 pixels (2/5 Nyquist). ``wedge_threshold``: fraction of a
    particle's mean weight below which a Fourier voxel counts as missing. Refuses sets
    that need more than ``max_memory_GB``.
    """

    name = "ccmatrix"
    bench_params = {"n_components": 4, "cluster": None, "lowpass_A": None}

    def __init__(self, n_components: int = 4, lowpass_A: float | None = None,
                 highpass_A: float | None = None, normalise: str = "overlap",
                 wedge_threshold: float = 0.05,
                 max_memory_GB: float = 4.0, cluster: str | None = "gmm",
                 n_clusters: int | None = None, max_clusters: int = 8, batch_size: int = 32,
                 device: str | None = None, progress: bool = True,
                 random_state: int | None = None) -> None:
        self.lowpass_A = lowpass_A
        self.highpass_A = highpass_A
        self.normalise = normalise
        self.wedge_threshold = wedge_threshold
        self.max_memory_GB = max_memory_GB
        self._common(n_components, cluster, n_clusters, max_clusters, batch_size, device,
                     progress, random_state)

    def _check_size(self, n: int, n_coeffs: int) -> None:
        need = required_memory_GB(n, n_coeffs)
        if need > self.max_memory_GB:
            raise MemoryError(
                f"ccmatrix: {n} particles need ~{need:.1f} GB for the {n} x {n} "
                f"cross-correlation matrices (limit max_memory_GB={self.max_memory_GB}); "
                "memory and time grow as N^2. Use wmdpca (streaming, linear in N) for "
                "large sets, or a subset, or raise max_memory_GB.")

    def _coefficients(self, particles: ParticleSet, device: torch.device
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> F (N, 2P) real/imag features, E (N, P) |F|^2, M (N, P) wedge support."""
        o = particles.optics
        self.volume_lowpass_A_ = float(self.lowpass_A or DEFAULT_LOWPASS_PX * o.pixel_size_A)
        filt = bandpass(o.box, o.pixel_size_A, self.volume_lowpass_A_, self.highpass_A, device)
        keep = filt > 1e-3
        p = int(keep.sum())
        n = particles.n_particles
        self._check_size(n, p)
        bar = self._bar(2 * n, "average + coefficients")
        avg = global_average(particles, self.batch_size, device, progress=bar.update)
        wbar = avg.weight_floor()
        herm = hermitian_weights_3d(o.box, device=device)[keep]
        f = torch.zeros((n, 2 * p), device=device)
        e = torch.zeros((n, p), device=device)
        m = torch.zeros((n, p), device=device)
        for idx, y, w in iter_reference(particles, self.batch_size, device):
            if self.normalise == "overlap":  # wedge-masked differences
                y = y - w * avg.mean_ft[None]
            vol = padded_to_volume(y / wbar[None], o.box)
            c = (volume_to_ft(vol) * filt[None])[:, keep]
            w = subsample_rfft(w)
            t = torch.as_tensor(idx, device=device)
            f[t] = torch.cat([c.real, c.imag], dim=1) * herm.repeat(2).sqrt()
            e[t] = c.abs() ** 2 * herm if self.normalise == "cc" else herm
            wk = w[:, keep]
            m[t] = (wk > self.wedge_threshold * wk.mean(1, keepdim=True)).float()
            bar.update(len(idx))
        bar.close()
        return f, e, m

    def _matrix(self, f: torch.Tensor, e: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """The N x N similarity matrix (constrained CC, or overlap-scaled inner product)."""
        if self.normalise not in ("cc", "overlap"):
            raise ValueError("ccmatrix: normalise must be cc or overlap")
        num = f @ f.T
        if self.normalise == "overlap":  # <F_i, F_j> on the common support, per voxel
            overlap = (m * e) @ m.T  # e holds the Hermitian multiplicities here
            return num * (e[0].sum() / overlap.clamp_min(1.0))
        a = e @ m.T  # a_ij = sum M_j |F_i|^2
        return num / (a * a.T).clamp_min(1e-30).sqrt()

    def _embed(self, particles: ParticleSet, device: torch.device) -> np.ndarray:
        f, e, m = self._coefficients(particles, device)
        cc = self._matrix(f, e, m)
        del f, e, m
        self.cc_matrix_ = cc.cpu() if cc.shape[0] <= 4000 else None
        n = cc.shape[0]
        cc = cc - cc.mean(0, keepdim=True)
        cc = cc - cc.mean(1, keepdim=True)
        k = min(self.n_components, n - 1)
        if n <= 3000:
            all_vals, vecs = symmetric_eigh(cc)
            total = float(all_vals.clamp_min(0).sum())
            vals, vecs = all_vals.flip(0)[:k].float(), vecs.flip(1)[:, :k].float()
        else:
            store = FeatureStore(n, n, max_memory_GB=1e9)
            store.data = cc.cpu()
            res = randomized_svd(store, k, self._generator(41), device=device)
            vals, vecs = res.singular_values.to(device), (res.scores.to(device)
                                                          / res.singular_values.to(device))
            total = float(torch.diagonal(cc).clamp_min(0).sum())
        vals = vals.clamp_min(0)
        # eigenvector signs are arbitrary: make each one's largest-magnitude entry (a
        # particle, whatever its row) positive, so a permuted star gives the same latents
        top = vecs.gather(0, vecs.abs().argmax(0, keepdim=True))[0]
        vecs = vecs * torch.where(top < 0, -1.0, 1.0).to(vecs.dtype)
        self.eigenvalues_ = vals.cpu().numpy()
        self.explained_variance_ratio_ = (vals / max(total, 1e-30)).cpu().numpy()
        return (vecs * vals.sqrt()).cpu().numpy()
