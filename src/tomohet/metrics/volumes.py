"""Map-quality scores: per-particle FSC against the true volume, half-map resolution."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from tomohet.physics.fsc import fsc, fsc_auc, resolution_at

__all__ = ["per_particle_fsc", "half_map_resolution", "ParticleFSC", "check_volumes"]


class ParticleFSC(NamedTuple):
    """Per-particle FSC results: auc (N,), resolution_A (N,) at the threshold, curves
    (N, D//2+1). ``mean_auc`` is the cryoBench-style summary."""

    auc: np.ndarray
    resolution_A: np.ndarray
    curves: np.ndarray

    @property
    def mean_auc(self) -> float:
        return float(np.mean(self.auc))


def _as_tensor(x: object, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if not torch.is_floating_point(t):
        t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def check_volumes(a: object, b: object, names: tuple[str, str] = ("pred_vols", "true_vols")
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Two stacks of cubes of one shape (..., D, D, D) as float tensors; else ValueError."""
    ta, tb = _as_tensor(a, names[0]), _as_tensor(b, names[1])
    for n, t in zip(names, (ta, tb), strict=True):
        if t.ndim < 3 or len(set(t.shape[-3:])) != 1 or t.shape[-1] < 4:
            raise ValueError(f"{n} must end in a (D, D, D) cube with D >= 4, got "
                             f"{tuple(t.shape)}")
    if ta.shape != tb.shape:
        raise ValueError(f"{names[0]} {tuple(ta.shape)} and {names[1]} {tuple(tb.shape)} "
                         "differ in shape")
    return ta, tb


def per_particle_fsc(
    pred_vols: object,
    true_vols: object,
    pixel_size_A: float,
    mask: object | None = None,
    threshold: float = 0.5,
    chunk: int = 64,
) -> ParticleFSC:
    """FSC of each particle's predicted volume against its true volume (cryoBench).

    pred_vols, true_vols (N, D, D, D) (or one (D, D, D) pair); mask (D, D, D) real,
    multiplied onto both. Processed ``chunk`` particles at a time. Returns
    :class:`ParticleFSC` with AUC (FSC area over shells 1..Nyquist, 1 = identical) and the
    resolution (A) where the FSC drops below ``threshold``.
    """
    p, t = check_volumes(pred_vols, true_vols)
    if pixel_size_A <= 0:
        raise ValueError(f"pixel_size_A must be positive, got {pixel_size_A}")
    if p.ndim == 3:
        p, t = p[None], t[None]
    p, t = p.reshape(-1, *p.shape[-3:]), t.reshape(-1, *t.shape[-3:])
    if p.shape[0] == 0:
        raise ValueError("no volumes given")
    m = None
    if mask is not None:
        m = _as_tensor(mask, "mask").to(p.device)
        if m.shape != p.shape[-3:]:
            raise ValueError(f"mask shape {tuple(m.shape)} differs from the volumes' "
                             f"{tuple(p.shape[-3:])}")
    curves = []
    for s in range(0, p.shape[0], max(1, chunk)):
        a, b = p[s : s + chunk].float(), t[s : s + chunk].float().to(p.device)
        if m is not None:
            a, b = a * m, b * m
        curves.append(fsc(a, b).cpu())
    c = torch.cat(curves).numpy().astype(float)
    auc = np.array([fsc_auc(row) for row in c])
    res = np.array([resolution_at(row, pixel_size_A, threshold) for row in c])
    return ParticleFSC(auc, res, c)


def half_map_resolution(h1: object, h2: object, pixel_size_A: float,
                        threshold: float = 0.143, mask: object | None = None) -> float:
    """Gold-standard resolution (A) of two half maps (D, D, D) at ``threshold``."""
    a, b = check_volumes(h1, h2, ("h1", "h2"))
    if a.ndim != 3:
        raise ValueError(f"half maps must be single (D, D, D) volumes, got {tuple(a.shape)}")
    return float(per_particle_fsc(a, b, pixel_size_A, mask, threshold).resolution_A[0])
