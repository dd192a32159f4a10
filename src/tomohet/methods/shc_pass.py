"""One SHC iteration on the compacted pixels (issue 14): score, climb, re-average.

Scoring needs every particle's score against every class, and the climb of a particle
needs only its own scores, current class and keyed draws; so one pass over the batches
does it all. Per batch, the kept pixels and their trilinear plan
(:func:`tomohet.physics.compact.compact_batch`, through the engine's
:meth:`~tomohet.methods.em.EMEngine._compact_for`, its geometry cache included) are built
once; the pixels inside the scoring band of each half set's particles sample the K
references of the other half (:class:`~tomohet.physics.compact.CompactProjector`: one
plan for all K classes), their normalised cross-correlations
(:func:`~tomohet.methods.shc_scoring.ncc_scores_compact`) decide the new classes, and the
same pixels, every one (not only the band), are inserted into the 2K half-set sums with
the new classes (:func:`~tomohet.physics.compact.insert_compact`). Batches in the
engine's keyed order, as :meth:`~tomohet.methods.em.EMEngine.reconstruct_pass`, so the
sums equal a reconstruction pass with the new labels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tomohet import parallel
from tomohet.methods.shc_scoring import ncc_scores_compact, pixel_weights
from tomohet.physics.compact import (
    CompactBatch,
    CompactProjector,
    CompactSums,
    insert_compact,
    project_compact,
    subset_batch,
)
from tomohet.physics.projection import Backprojector

__all__ = ["climb_pass", "batch_scores", "hard_volume_weights"]

# rows (B,) positions into the engine's index, their scores (B, K, 1) -> new classes (B,)
Climb = Callable[[np.ndarray, np.ndarray], np.ndarray]


def batch_scores(cb: CompactBatch, tables: list[CompactProjector], weight: torch.Tensor,
                 side: torch.Tensor, distance: bool = False) -> torch.Tensor:
    """Scores (B, K) of a batch's particles: particle b against ``tables[side[b]]`` (the
    references of the other half set). ``weight`` (M,): each kept pixel's scoring
    weight (0 outside the band: not projected)."""
    k = tables[0].n_volumes
    out = torch.zeros((cb.n_particles, k), device=cb.data.device)
    in_band = weight > 0
    for h in (0, 1):
        mine = side == h
        keep = (in_band & mine.index_select(0, cb.particle)).nonzero(as_tuple=True)[0]
        if keep.numel() == 0:
            continue
        sub = subset_batch(cb, keep)
        s = ncc_scores_compact(sub, project_compact(tables[h], sub), weight[keep],
                               distance)
        out[mine] = s[mine]
    return out


def hard_volume_weights(labels: np.ndarray, side: torch.Tensor, k: int) -> torch.Tensor:
    """Volume weights (2K, B) of hard classes (B,) and half sets (B,): 1 at volume
    2 c + h (class c, half h), else 0."""
    b = len(labels)
    vw = torch.zeros((2 * k, b), device=side.device)
    vol = 2 * torch.as_tensor(labels, device=side.device) + side.long()
    vw[vol, torch.arange(b, device=side.device)] = 1.0
    return vw


def climb_pass(engine, refs: torch.Tensor, band: torch.Tensor, halves: np.ndarray,
               climb: Climb, distance: bool = False) -> tuple[np.ndarray, Backprojector]:
    """New classes (N,) of every particle and the 2K half-set sums with them.

    ``engine``: an :class:`~tomohet.methods.em.EMEngine` on the compact path; ``refs``
    (2K, D, D, D) half-set references (class c, half h at 2c + h; particles of half h
    are scored against half 1 - h); ``band`` (D, D//2+1) or (D, D, D//2+1) bool: the
    shells scored; ``halves`` (N,); ``climb``: see :data:`Climb`; ``distance``: score
    by distance instead of normalised cross-correlation
    (:func:`~tomohet.methods.shc_scoring.ncc_scores_compact`).
    """
    k = refs.shape[0] // 2
    dev = engine.device
    tables = [CompactProjector(engine.projector(refs[1 - h :: 2])) for h in (0, 1)]
    sums = CompactSums(engine.box, 2 * k, engine.cfg.pad, dev)
    weight_all = pixel_weights(band.to(dev))
    h_all = torch.as_tensor(halves, device=dev)
    n_groups = engine.new_noise().sigma2.shape[0]
    new = np.zeros(len(halves), dtype=np.int64)  # rows of other ranks stay 0 here
    for rows in parallel.shard(engine.batches()):  # this rank's batches
        # the engine's compacted batch (from its geometry cache when it holds it)
        cb, _ = engine._compact_for(rows, n_groups, sums.padded)
        side = h_all[torch.as_tensor(rows, device=dev)]
        scores = batch_scores(cb, tables, weight_all.index_select(0, cb.pixel), side,
                              distance)
        lab = climb(rows, scores.cpu().numpy()[:, :, None])
        new[rows] = lab
        insert_compact(sums, cb, hard_volume_weights(lab, side, k), None)
        if engine.progress:
            engine.progress(len(rows))
    # each row was climbed by one rank; the sums of every rank (no-op on one)
    parallel.all_reduce_sum([new, sums.re, sums.im, sums.weight])
    return new, sums.backprojector()
