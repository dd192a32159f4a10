"""Independent components, one region at a time (issue 12).

When the residual variance found by :mod:`tomohet.methods.discovery` sits in separate
regions (two caps, a factor and a lid), the states are most often combinations of
components that come and go independently. Users then classify each component with its
own mask (present / absent) and combine the answers. Joint K-class EM over the union of
the regions must estimate K class maps from about N / K particles each; at low SNR it
drifts away even from a correct partition (ladder ``m05-snr0.05``: ARI 0.36 -> 0.15 from
the true labels), while a 2-class split per region estimates each map from about N / 2
particles, inside that region's mask only.

1. :func:`candidate_regions` -- the regions of the z-map: the most significant cluster
   (at the detection's ``alpha``, as :func:`~tomohet.methods.discovery.region_from`),
   then further separate clusters whose peak is significant at ``alpha_more`` against
   the same null of the maximum (conservative for a single cluster: the null is the
   maximum over the whole box), by decreasing peak.
2. Each region is classified in two (:class:`~tomohet.methods.ml.MLClassifier` with
   ``n_classes=2`` on an :class:`~tomohet.methods.em.EMEngine` focused on it, the whole
   consensus subtracted: the class maps are differences from the consensus, so the
   Wiener filter shrinks a noisy class towards the consensus, not towards zero).
3. :func:`combine_posteriors` -- joint classes ``c = sum_r b_r 2^r`` with posteriors the
   product of the regions' posteriors (independence).

:func:`candidate_regions` and :func:`combine_posteriors` are pure; :func:`classify_regions`
runs step 2 for an ML classifier.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import ndimage

from tomohet.methods.detection import Detection
from tomohet.methods.em import EMEngine, EMState

if TYPE_CHECKING:
    from tomohet.methods.discovery import Setup

__all__ = ["candidate_regions", "combine_posteriors", "n_regions_for", "classify_regions"]


def n_regions_for(k: int) -> int:
    """How many independent two-state regions K classes can hold: floor(log2 K)."""
    return int(np.floor(np.log2(max(k, 1))))


def candidate_regions(det: Detection, scale: float, max_regions: int,
                      alpha_more: float = 0.05, extend: float = 0.6, dilate: int = 2
                      ) -> list[torch.Tensor]:
    """Separate regions of the detection's z-map at ``scale``, as soft small-grid masks.

    Clusters are the connected voxels above ``extend`` x the threshold. The first (the
    highest peak) must exceed the threshold (the detection's alpha); each further one
    needs ``p <= alpha_more`` against the null maxima. At most ``max_regions``, by
    decreasing peak; each dilated by ``dilate`` voxels (not into an earlier region) and
    smoothed like :func:`~tomohet.methods.discovery.focus_from_variance`.
    det.z_scales (S, d, d, d) -> list of (d, d, d) masks in [0, 1] (empty when nothing
    is significant).
    """
    if not det.significant or max_regions < 1:
        return []
    i = int(np.argmin(np.abs(np.asarray(det.scales) - scale)))
    z = det.z_scales[i].numpy()
    lab, n = ndimage.label(z > extend * det.threshold)
    if n == 0:
        return []
    peaks = np.asarray(ndimage.maximum(z, lab, index=np.arange(1, n + 1)), dtype=float)
    null = np.asarray(det.null, dtype=float)
    p = (1 + (null[None, :] >= peaks[:, None]).sum(1)) / (len(null) + 1)
    taken = np.zeros(z.shape, dtype=bool)
    out: list[torch.Tensor] = []
    for j, c in enumerate(np.argsort(-peaks, kind="stable")):
        if len(out) == max_regions:
            break
        ok = peaks[c] > det.threshold if j == 0 else p[c] <= alpha_more
        if not ok:
            break
        grown = lab == c + 1
        if dilate > 0:
            grown = ndimage.binary_dilation(grown, iterations=dilate)
        grown &= ~taken
        taken |= grown
        soft = ndimage.gaussian_filter(grown.astype(np.float64), 0.7)
        soft = np.clip(soft / max(soft.max(), 1e-12) * 1.5, 0.0, 1.0)
        out.append(torch.from_numpy(soft.astype(np.float32)))
    return out


def combine_posteriors(region_posteriors: list[np.ndarray], k: int) -> np.ndarray:
    """Joint class posteriors from independent two-class posteriors per region.

    region_posteriors: R arrays (N, 2); joint class ``c = sum_r b_r 2^r`` has posterior
    ``prod_r p_r[:, b_r]``. Classes ``2^R .. k - 1`` (when the data supported fewer
    regions than K can hold) get posterior 0. -> (N, k), rows summing to 1.
    """
    if not region_posteriors:
        raise ValueError("combine_posteriors needs at least one region")
    r = len(region_posteriors)
    if 2**r > k:
        raise ValueError(f"{r} regions make {2**r} classes, more than K = {k}")
    n = region_posteriors[0].shape[0]
    out = np.zeros((n, k))
    for c in range(2**r):
        prob = np.ones(n)
        for i, post in enumerate(region_posteriors):
            prob = prob * np.asarray(post, dtype=float)[:, (c >> i) & 1]
        out[:, c] = prob
    return out / out.sum(1, keepdims=True).clip(1e-300)


def classify_regions(clf: Any, setup: Setup, particles, halves: np.ndarray) -> EMState:
    """Step 2 and 3 for an ML classifier ``clf`` (:class:`~tomohet.methods.ml.MLClassifier`):
    one two-class focused EM per region of ``setup.discovery`` (started from its
    two-class k-means labels, not annealed), then the joint posteriors. -> the final
    state, with class maps reconstructed by ``setup.plain`` (full maps, no subtraction)
    and the regions' EM histories one after the other (``region``, ``stage`` in each
    entry; iterations numbered on across regions).
    """
    found, plain = setup.discovery, setup.plain
    assert found is not None and setup.consensus is not None
    k = clf.n_classes
    binary = clf.__class__(**{**clf.get_params(), "n_classes": 2, "focus_mask": None,
                              "checkpoint_dir": None, "progress": False, "n_restarts": 1})
    posts: list[np.ndarray] = []
    history: list[dict[str, Any]] = []
    for i, (mask, init) in enumerate(zip(found.regions, found.region_labels, strict=True)):
        engine = EMEngine(plain.particles, dataclasses.replace(plain.cfg, n_classes=2),
                          plain.index, plain.reference_mask, mask.to(plain.device),
                          setup.consensus.to(plain.device), progress=plain.progress,
                          subtract_all=True)
        binary.discovery_ = dataclasses.replace(found, focus=mask, labels=init)
        binary.setup_ = dataclasses.replace(setup, engine=engine, from_components=True,
                                            focus=mask)
        state = binary._initialise(engine, particles, plain.index, halves, 0)
        state = binary._iterate(engine, state, halves, clf.n_iter, None)
        posts.append(state.posteriors)
        history += [dict(h, iteration=len(history) + j + 1, region=i, stage="region split",
                         region_fraction_of_box=float(mask.mean()))
                    for j, h in enumerate(state.history)]
    post = combine_posteriors(posts, k)
    # the last iteration of each region (its log evidence; the regions are independent)
    last = {max(h["iteration"] for h in history if h["region"] == i)
            for i in range(len(posts))}
    noise = plain.new_noise()
    noise.sigma2 = state.sigma2.to(plain.device)
    vols, curves, res = plain.volumes_from(plain.reconstruct_pass(post, noise, halves))
    priors = torch.as_tensor(post.mean(0), dtype=torch.float32)
    return EMState(volumes=vols, priors=priors, sigma2=state.sigma2, posteriors=post,
                   iteration=len(history), log_likelihood=float(sum(
                       [h["log_likelihood"] for h in history if h["iteration"] in last])),
                   fsc=curves, resolution_A=res, particles=plain.fingerprint,
                   history=history)
