"""Candidate regions from every scale of the z-map, each judged against its own scale's null.

When the variance test finds nothing, discovery hands its highest clusters to the
held-out likelihood test (:mod:`tomohet.methods.region_test`). Drawn at one scale (the
finest whose peak is near the best, :func:`~tomohet.methods.discovery.region_scale`),
those clusters are often single-voxel noise spikes of the unsmoothed map: the finest
scale has the most independent voxels, so its noise maxima are the highest, while a
small component is a blob of a few voxels that only the matched low-pass gathers into
one cluster. On a held-out-like 5% / 3% cell at SNR 0.05 written as RELION 3.0-style
subtomograms (500 particles), discovery drew its clusters at scale 0: component A's
voxels fell apart below the cluster level and it was not among six candidates; at
scale 0.75 it is one cluster.

Here each scale's z-map is clustered (as
:func:`~tomohet.methods.regions.candidate_regions` does: above ``extend`` x that
scale's threshold, neighbouring peaks cut apart), and each cluster's peak gets a
p-value against the maxima of the half-split null **of its own scale**
(``Detection.null_scales``), which puts clusters of different scales on one footing.
Clusters are taken by increasing p (then by peak over the scale's threshold), skipping
one whose dilated voxels are mostly taken already. Each candidate keeps its scale: the
two-class start inside it is drawn from the maps low-passed at that scale.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from tomohet.methods.detection import Detection
from tomohet.methods.peaks import split_clusters
from tomohet.methods.regions import soft_region

__all__ = ["candidates_over_scales"]


def _clusters(det: Detection, i: int, level: float, threshold: float, null: np.ndarray
              ) -> list[tuple[float, float, np.ndarray]]:
    """Clusters of scale ``i``: (p of the peak against ``null``, peak / threshold,
    voxels (d, d, d) bool)."""
    z = det.z_scales[i].numpy()
    lab, n = ndimage.label(z > level)
    if n == 0:
        return []
    lab, n = split_clusters(z, lab, n, threshold)
    peaks = np.asarray(ndimage.maximum(z, lab, index=np.arange(1, n + 1)), dtype=float)
    p = (1 + (null[None, :] >= peaks[:, None]).sum(1)) / (len(null) + 1)
    return [(float(p[c]), float(peaks[c] / threshold), lab == c + 1) for c in range(n)]


def candidates_over_scales(det: Detection, max_regions: int, alpha: float = 0.01,
                           extend: float = 0.6, dilate: int = 2, overlap: float = 0.5,
                           exclude: list[torch.Tensor] | None = None
                           ) -> list[tuple[torch.Tensor, float]]:
    """Up to ``max_regions`` candidate regions from the clusters of every scale.

    A scale's clusters are its connected voxels above ``extend`` x its threshold (the
    ``1 - alpha`` quantile of ``det.null_scales`` for that scale); they are ranked by
    the p-value of their peak against that scale's null maxima, then by peak over
    threshold. A cluster is dilated by ``dilate`` voxels; one whose dilated voxels
    overlap the regions already taken by more than ``overlap`` of its own is skipped,
    otherwise it keeps its voxels not yet taken. -> [(soft small-grid mask (d, d, d) in
    [0, 1], its scale)], best first. No significance cut: these are for the held-out
    test. Needs ``det.null_scales``. ``exclude``: small-grid masks of regions already
    found (voxels above 0.5 count as taken).
    """
    if det.null_scales is None:
        raise ValueError("candidates_over_scales needs the per-scale null maxima "
                         "(Detection.null_scales)")
    pool: list[tuple[float, float, int, np.ndarray]] = []
    for i in range(len(det.scales)):
        null = np.asarray(det.null_scales[i], dtype=float)
        threshold = float(np.quantile(null, 1.0 - alpha)) if len(null) else np.inf
        if not np.isfinite(threshold) or threshold <= 0:
            continue
        for p, height, voxels in _clusters(det, i, extend * threshold, threshold, null):
            pool.append((p, -height, i, voxels))
    pool.sort(key=lambda c: (c[0], c[1], c[2]))
    taken = np.zeros(det.z.shape, dtype=bool)
    for r in exclude or []:
        taken |= r.cpu().numpy() > 0.5
    out: list[tuple[torch.Tensor, float]] = []
    for _, _, i, voxels in pool:
        if len(out) == max_regions:
            break
        grown = ndimage.binary_dilation(voxels, iterations=dilate) if dilate > 0 else voxels
        if (grown & taken).sum() > overlap * grown.sum():
            continue
        grown = grown & ~taken
        taken |= grown
        out.append((soft_region(grown), float(det.scales[i])))
    return out
