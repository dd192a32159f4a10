"""Elastic-network normal modes and Gaussian atoms in Fourier space (tensors in, out).

* :func:`anm_modes` -- the lowest non-rigid modes of an anisotropic network model (ANM):
  beads connected by springs of stiffness ``1 / r^2`` within ``cutoff_A``. The one home of
  the elastic network: the simulator's normal-mode motions
  (:mod:`tomohet.sim.motions`) and the ``nma`` method both use it.
* :func:`superpose` -- weighted Kabsch superposition of one conformation onto another.
* :func:`gaussian_atoms_ft` -- the exact continuous Fourier transform of a sum of
  isotropic 3D Gaussians at any frequencies, differentiable in the atom positions; the
  phase convention is that of :func:`tomohet.physics.fourier.volume_to_ft` (origin at the
  box centre, voxel ``D // 2``).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["anm_modes", "superpose", "gaussian_atoms_ft", "MAX_ANM_BEADS"]

MAX_ANM_BEADS = 3000


def anm_modes(beads_A: np.ndarray, n_modes: int, cutoff_A: float = 15.0) -> np.ndarray:
    """Lowest ``n_modes`` non-rigid ANM modes of beads (N, 3) -> (n_modes, N, 3).

    Each mode is a unit vector over all 3N coordinates (the Hessian's eigenvectors in
    increasing order of eigenvalue, the six rigid-body modes skipped).
    """
    beads_A = np.asarray(beads_A, dtype=np.float64)
    n = len(beads_A)
    if n > MAX_ANM_BEADS:
        raise ValueError(f"ANM on {n} beads is too large (limit {MAX_ANM_BEADS})")
    if n_modes < 1 or 6 + n_modes > 3 * n:
        raise ValueError(f"{n} beads have {max(3 * n - 6, 0)} non-rigid modes; "
                         f"{n_modes} asked")
    d = beads_A[:, None] - beads_A[None]
    r2 = (d**2).sum(-1)
    contact = (r2 < cutoff_A**2) & (r2 > 0)
    block = -np.where(contact, 1.0 / np.maximum(r2, 1e-12), 0.0)[..., None, None] \
        * d[..., :, None] * d[..., None, :]  # (N, N, 3, 3)
    for i in range(n):
        block[i, i] = -block[i].sum(0)
    hess = block.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n)
    val, vec = np.linalg.eigh(hess)
    floppy = int((val < 1e-8 * max(float(val[-1]), 1e-30)).sum())
    if floppy > 6:  # zero modes beyond rigid motion mix with it: the modes are meaningless
        raise ValueError(f"the elastic network of {n} beads has {floppy - 6} zero-energy "
                         f"non-rigid modes at cutoff {cutoff_A:g} A (not one connected, "
                         "rigid network); use a larger cutoff")
    return vec[:, 6 : 6 + n_modes].T.reshape(n_modes, n, 3)


def superpose(mobile: np.ndarray, fixed: np.ndarray, use: np.ndarray,
              weight: np.ndarray) -> np.ndarray:
    """Mobile (M, 3) moved by the weighted Kabsch fit of ``mobile[use]`` onto ``fixed[use]``."""
    w = weight[use] / weight[use].sum()
    mc, fc = (w[:, None] * mobile[use]).sum(0), (w[:, None] * fixed[use]).sum(0)
    h = ((mobile[use] - mc) * w[:, None]).T @ (fixed[use] - fc)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return (mobile - mc) @ rot.T + fc


def gaussian_atoms_ft(xyz_px: torch.Tensor, weight: torch.Tensor, sigma_px: torch.Tensor,
                      freq: torch.Tensor) -> torch.Tensor:
    """Fourier transform of ``sum_m w_m N(x_m, sigma_m^2 I)`` at frequencies ``freq``.

    xyz_px (..., M, 3) positions (x, y, z) in voxels from the box centre; weight (M,) or
    (..., M); sigma_px (M,); freq (Q, 3) cycles/voxel (kx, ky, kz) ->
    (..., Q) complex: ``sum_m w_m exp(-2 pi^2 sigma_m^2 |k|^2) exp(-2 pi i k . x_m)``.
    """
    k2 = (freq**2).sum(-1)  # (Q,)
    amp = weight[..., None] * torch.exp(-2 * torch.pi**2 * sigma_px[:, None] ** 2 * k2)
    phase = -2 * torch.pi * (xyz_px @ freq.T)  # (..., M, Q)
    re = (amp * torch.cos(phase)).sum(-2)
    im = (amp * torch.sin(phase)).sum(-2)
    return torch.complex(re, im)
