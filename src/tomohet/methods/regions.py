"""Separate regions of heterogeneity from a detection's z-map (issue 12).

:func:`candidate_regions` turns :class:`~tomohet.methods.detection.Detection`'s z-map
into the regions discovery splits in: connected clusters of excess variance, cut between
prominent peaks (:func:`~tomohet.methods.peaks.split_clusters`), the first significant,
further ones by their p-value, each dilated and smoothed into a soft mask.

A large component makes a large cluster at high SNR, and the watershed cuts it into
pieces; a small neighbouring component can lie within its dilation. Ranked by peak alone,
the further regions are then pieces of the first component and the second is lost (ladder
30% / 18%, SNR 0.1, 1,000 particles: region 0 held the cores of three clusters, B's was
skipped, and ml2d reached ARI 0.37 against an oracle of 1.00). With ``start`` (a
two-class start from a mask, as discovery draws one), a further cluster whose start
agrees with an accepted region's (ARI >= ``same_ari``) is a piece of the same component
and no new region; a different one whose core lies inside an earlier region's dilation
takes its own dilation back from it (never an earlier region's core).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy import ndimage
from sklearn.metrics import adjusted_rand_score

from tomohet.methods.detection import Detection
from tomohet.methods.peaks import split_clusters

__all__ = ["candidate_regions", "n_regions_for", "soft_region", "SAME_ARI"]

# two starts this alike (adjusted Rand index) split the particles by the same component:
# on the ladder, pieces of one component agree 0.42-1.00 (the lower between a strong and
# a weak piece at SNR 0.1) and different components -0.01-0.04; 0.5 keeps components
# that are correlated in the data (present mostly together) apart
SAME_ARI = 0.5


def n_regions_for(k: int) -> int:
    """How many independent two-state regions K classes can hold: floor(log2 K)."""
    return int(np.floor(np.log2(max(k, 1))))


def _ranked_clusters(det: Detection, scale: float, extend: float,
                     confirm: Detection | None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Clusters of the z-map at ``scale`` (labels), their peaks over all scales, their p
    (against ``confirm``'s null when given, by its peaks) and the order they are taken
    in: the highest peak first, then by decreasing (confirmed) peak."""
    i = int(np.argmin(np.abs(np.asarray(det.scales) - scale)))
    z = det.z_scales[i].numpy()
    lab, n = ndimage.label(z > extend * det.threshold)
    if n == 0:
        return lab, np.zeros(0), np.zeros(0), []
    lab, n = split_clusters(z, lab, n, det.threshold)  # neighbouring components apart
    # each cluster's peak over all scales (the null is the maximum over voxels and
    # scales): a small component can be clearer at a coarser scale than the one that
    # shapes the regions (ladder m05, SNR 0.1: component B at p 0.07 at scale 0)
    index = np.arange(1, n + 1)
    peaks = np.asarray(ndimage.maximum(det.z.numpy(), lab, index=index), dtype=float)
    more, ref = peaks, det
    if confirm is not None:
        more = np.asarray(ndimage.maximum(confirm.z.numpy(), lab, index=index), dtype=float)
        ref = confirm
    null = np.asarray(ref.null, dtype=float)
    p = (1 + (null[None, :] >= more[:, None]).sum(1)) / (len(null) + 1)
    first = int(np.argmax(peaks))  # np.argmax: the first of equal peaks, as a stable sort
    rest = [int(c) for c in np.argsort(-more, kind="stable") if c != first]
    return lab, peaks, p, [first, *rest]


def candidate_regions(det: Detection, scale: float, max_regions: int,
                      alpha_more: float = 0.05, extend: float = 0.6, dilate: int = 2,
                      confirm: Detection | None = None, require_first: bool = True,
                      start: Callable[[torch.Tensor], np.ndarray] | None = None,
                      same_ari: float = SAME_ARI) -> list[torch.Tensor]:
    """Separate regions of the detection's z-map at ``scale``, as soft small-grid masks.

    Clusters are the connected voxels above ``extend`` x the threshold at ``scale``;
    a cluster's peak is the largest z over all scales inside it. The first (the highest
    peak) must exceed the threshold (the detection's alpha); each further one needs
    ``p <= alpha_more`` against the null maxima. At most ``max_regions``, by
    decreasing peak; each dilated by ``dilate`` voxels (not into an earlier region) and
    smoothed like :func:`~tomohet.methods.discovery.focus_from_variance`.
    ``confirm``: the same test confined to the particle (``radius`` =
    :func:`~tomohet.methods.detection.support_radius`): further clusters are then taken by
    their peak in its z-map, with p against its null (a cluster outside the particle has
    peak 0); the first region and the clusters' shapes still come from ``det``.
    ``require_first=False``: the first need not exceed the threshold either (candidates
    for a held-out test when the variance test finds nothing).

    ``start`` (soft small-grid mask -> (N,) labels): the module doc's rule, a further
    cluster that splits the particles as an accepted region does is skipped, and one that
    does not takes its dilation back from earlier regions (not their cores). Without it,
    a cluster whose dilation lies wholly inside earlier regions' is skipped.
    det.z_scales (S, d, d, d) -> list of (d, d, d) masks in [0, 1] (empty when nothing
    is significant).
    """
    if (require_first and not det.significant) or max_regions < 1:
        return []
    lab, peaks, p, order = _ranked_clusters(det, scale, extend, confirm)
    if max_regions == 1:
        start = None  # one region: nothing to tell apart
    grown_all: list[np.ndarray] = []
    cores = np.zeros(lab.shape, dtype=bool)  # the accepted regions' clusters
    starts: list[np.ndarray] = []
    for j, c in enumerate(order):
        if len(grown_all) == max_regions:
            break
        ok = (peaks[c] > det.threshold or not require_first) if j == 0 else \
            p[c] <= alpha_more
        if not ok:
            break
        core = lab == c + 1
        own = ndimage.binary_dilation(core, iterations=dilate) if dilate > 0 else core
        own &= ~cores
        if not own.any():
            continue
        if start is not None:
            labels = start(soft_region(own))
            if any(adjusted_rand_score(s, labels) >= same_ari for s in starts):
                continue  # a piece of an accepted region's component
            starts.append(labels)
        taken = np.any(grown_all, axis=0) if grown_all else np.zeros_like(core)
        grown = own & ~taken
        if start is not None and (core & taken).any():
            grown = own  # its core lies in an earlier dilation: take the dilation back
            grown_all = [g & ~own for g in grown_all]
        if not grown.any():  # without start: all of it lies in earlier dilations
            continue
        cores |= core
        grown_all.append(grown)
    return [soft_region(g) for g in grown_all if g.any()]


def soft_region(voxels: np.ndarray) -> torch.Tensor:
    """A region's voxels (d, d, d) bool as a soft mask in [0, 1]: Gaussian-smoothed
    (sd 0.7 voxels), scaled so its core is 1."""
    soft = ndimage.gaussian_filter(voxels.astype(np.float64), 0.7)
    soft = np.clip(soft / max(soft.max(), 1e-12) * 1.5, 0.0, 1.0)
    return torch.from_numpy(soft.astype(np.float32))
