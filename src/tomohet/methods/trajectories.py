"""Volumes generated along latent directions of a linear model, written as MRC series.

For a model ``V(z) = mean + sum_j z_j U_j`` the series of component ``j`` is
``mean + t * sd_j * U_j`` for ``t`` in ``-span .. +span`` (default -2..+2 standard
deviations of the particles' coordinate ``z_j``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["component_series", "write_component_series"]


def component_series(mean: torch.Tensor, components: torch.Tensor, sd: np.ndarray,
                     n_steps: int = 5, span: float = 2.0) -> tuple[torch.Tensor, np.ndarray]:
    """mean (D, D, D), components (K, D, D, D), sd (K,) ->
    ((K, n_steps, D, D, D) volumes, (n_steps,) offsets in standard deviations)."""
    steps = np.linspace(-span, span, n_steps)
    t = torch.as_tensor(steps, dtype=torch.float32)
    s = torch.as_tensor(np.asarray(sd, dtype=np.float32))
    vols = mean[None, None] + (t[None, :, None, None, None] * s[:, None, None, None, None]
                               * components[:, None])
    return vols, steps


def write_component_series(out_dir: str | Path, mean: torch.Tensor, components: torch.Tensor,
                           latent: np.ndarray, pixel_size_A: float, n_steps: int = 5,
                           span: float = 2.0) -> list[Path]:
    """``component_XX/frame_YY.mrc`` for every component (ChimeraX: open as a series)."""
    from tomohet.io import write_mrc

    sd = np.asarray(latent, dtype=float).std(0)[: components.shape[0]]
    vols, steps = component_series(mean, components, sd, n_steps, span)
    paths = []
    for j in range(vols.shape[0]):
        folder = Path(out_dir) / f"component_{j + 1:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(steps):
            path = folder / f"frame_{i:02d}_{t:+.1f}sd.mrc"
            write_mrc(path, vols[j, i].numpy(), pixel_size_A)
            paths.append(path)
    return paths
