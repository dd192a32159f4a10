"""Fourier shell correlation and resolution estimates."""

from __future__ import annotations

import numpy as np
import torch

from tomohet.physics.fourier import hermitian_weights_3d, radial_shell_index, volume_to_ft

__all__ = ["fsc", "resolution_at", "fsc_auc", "shell_frequencies_per_A"]


def fsc(vol1: torch.Tensor, vol2: torch.Tensor) -> torch.Tensor:
    """FSC of two cubes per integer shell 0..D//2. (..., D, D, D) x2 -> (..., D//2 + 1).

    Batched over leading dimensions, so per-particle FSCs are one call.
    """
    d = vol1.shape[-1]
    f1, f2 = volume_to_ft(vol1.float()), volume_to_ft(vol2.float())
    shell = radial_shell_index(d, 3, device=vol1.device)
    herm = hermitian_weights_3d(d, device=vol1.device)
    n_shells = d // 2 + 1
    keep = shell < n_shells
    idx = shell[keep]
    lead = f1.shape[:-3]

    def shell_sum(x: torch.Tensor) -> torch.Tensor:
        flat = (x * herm)[..., keep].reshape(-1, int(keep.sum()))
        out = torch.zeros((flat.shape[0], n_shells), dtype=flat.dtype, device=flat.device)
        out.index_add_(1, idx, flat)
        return out.reshape(*lead, n_shells)

    num = shell_sum((f1 * f2.conj()).real)
    den = torch.sqrt(shell_sum(f1.abs() ** 2) * shell_sum(f2.abs() ** 2)).clamp_min(1e-30)
    return num / den


def shell_frequencies_per_A(box: int, pixel_size_A: float) -> np.ndarray:
    """Spatial frequency (1/A) of each FSC shell."""
    return np.arange(box // 2 + 1) / (box * pixel_size_A)


def resolution_at(curve: torch.Tensor | np.ndarray, pixel_size_A: float, threshold: float
                  ) -> float:
    """Resolution (A) where the FSC first drops below ``threshold`` (linear interpolation).

    Shell 0 is ignored. Returns the Nyquist resolution when it never drops.
    """
    c = np.asarray(curve, dtype=float)
    box = 2 * (len(c) - 1)
    freqs = shell_frequencies_per_A(box, pixel_size_A)
    for i in range(1, len(c)):
        if c[i] < threshold:
            if i == 1:
                return float(1 / freqs[1])
            f0, f1 = freqs[i - 1], freqs[i]
            t = (c[i - 1] - threshold) / max(c[i - 1] - c[i], 1e-12)
            return float(1 / (f0 + t * (f1 - f0)))
    return float(2 * pixel_size_A)


def fsc_auc(curve: torch.Tensor | np.ndarray) -> float:
    """Area under the FSC curve over shells 1..Nyquist, normalised to [.., 1] (cryoBench)."""
    c = np.asarray(curve, dtype=float)[1:]
    if len(c) <= 1:
        return float(c[0]) if len(c) else float("nan")
    # trapezoidal rule on a unit interval (np.trapezoid needs numpy >= 2, np.trapz < 2.4)
    return float((c.sum() - 0.5 * (c[0] + c[-1])) / (len(c) - 1))
