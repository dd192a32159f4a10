"""Consensus (or per-class) reconstruction of a whole particle set with gold-standard halves.

The loop over batches of a particle set: each batch is prepared
(:mod:`tomohet.data.prepare`), back-projected into volume ``2 * class + half set``
(:func:`tomohet.physics.reconstruction.backproject`) and the halves are merged and
Wiener-filtered by their FSC (:func:`tomohet.physics.reconstruction.gold_standard_maps`).
Half sets come from :func:`tomohet.data.keys.half_sets` (the file's rlnRandomSubset,
else keyed by particle name) unless given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from tomohet.data.keys import half_sets as keyed_half_sets
from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.prepare import prepare_batch, prepare_subtomo_batch
from tomohet.physics.fsc import resolution_at
from tomohet.physics.projection import Backprojector
from tomohet.physics.reconstruction import backproject, gold_standard_maps

__all__ = ["AverageResult", "average"]


@dataclass
class AverageResult:
    full: torch.Tensor  # (D, D, D)
    half1: torch.Tensor
    half2: torch.Tensor
    fsc: torch.Tensor  # (D//2+1,)
    resolution_A: float  # at FSC 0.143
    pixel_size_A: float


def _accumulate(
    particles: TiltSeriesParticles | SubtomogramParticles,
    bp: Backprojector,
    halves: np.ndarray,
    batch_size: int,
    device: torch.device | str,
    progress: bool,
    class_weights: np.ndarray | None = None,
) -> None:
    """Back-project all particles; volume = 2 * class + half set."""
    n = particles.n_particles
    k = 1 if class_weights is None else class_weights.shape[1]
    bar = tqdm(total=n, desc="back-projecting", unit="ptcl", disable=not progress)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        cw = np.ones((len(idx), 1)) if class_weights is None else class_weights[idx]
        vw = np.zeros((2 * k, len(idx)), dtype=np.float32)
        for c in range(k):
            vw[2 * c + halves[idx], np.arange(len(idx))] = cw[:, c]
        vw_t = torch.from_numpy(vw).to(device)
        if isinstance(particles, TiltSeriesParticles):
            prep = prepare_batch(particles.batch(idx, device), particles.optics)
            backproject(bp, prep, class_weights=vw_t)
        else:
            prep = prepare_subtomo_batch(particles.batch(idx, device), particles.optics)
            backproject(bp, prep, class_weights=vw_t)
        bar.update(len(idx))
    bar.close()


def average(
    particles: TiltSeriesParticles | SubtomogramParticles,
    *,
    half_sets: np.ndarray | None = None,
    class_weights: np.ndarray | None = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    pad: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> list[AverageResult]:
    """Weighted average(s) with gold-standard half maps and FSC.

    class_weights (N, K): one average per class (posterior-weighted); default one class.
    """
    if half_sets is None:  # the file's rlnRandomSubset, else drawn from the names
        halves = keyed_half_sets(particles.names, particles.tomo_names, seed, particles.table)
    else:
        halves = np.asarray(half_sets, dtype=np.int64)
    k = 1 if class_weights is None else class_weights.shape[1]
    bp = Backprojector(particles.optics.box, n_volumes=2 * k, pad=pad, device=device)
    _accumulate(particles, bp, halves, batch_size, device, progress, class_weights)
    px = particles.optics.pixel_size_A
    gs = gold_standard_maps(bp)
    results = []
    for c in range(k):
        curve = gs.fsc[c].cpu()
        results.append(AverageResult(gs.maps[c].cpu(), gs.half_maps[2 * c].cpu(),
                                     gs.half_maps[2 * c + 1].cpu(), curve,
                                     resolution_at(curve, px, 0.143), px))
    return results
