"""Finding where small heterogeneity lives before classifying it (issue 12).

When states differ by a small component (2-10% of the mass), class maps started from
random subsets differ by partition noise far larger than the component, and annealing
splits along the leading eigenvector of the whole-box data covariance, which is the
component only when its eigenvalue beats the noise bulk (~ sqrt(dim / N)). Reducing the
dimension -- low resolution, and only the region that varies -- makes it detectable.
This module finds that region from the data alone and proposes a first partition:

1. :func:`residual_maps` -- each particle's residual against the consensus (data minus
   the consensus model), noise-whitened and back-projected into the reference frame
   (``sum_t H^* w r``, the same linear operator for every voxel), low-passed by Fourier
   cropping to a small grid: (N, d, d, d).
2. :func:`tomohet.methods.detection.detect` -- is there heterogeneity above noise? The
   voxel variance of those maps over particles, low-passed at a few scales (a component
   is a coherent blob), as an excess over the noise floor per radial shell in units of
   its robust spread (a z-map per scale), tested against half-split nulls: the maximum
   over voxels and scales of ``(ratio_A - ratio_B) / 2`` for random halves of the
   particles (drawn from their names), which has the noise of the statistic but none of
   the heterogeneity. The threshold is their ``1 - alpha`` quantile: about ``alpha`` of
   data sets without heterogeneity show anything.
3. :func:`focus_from_variance` -- the significant region at the finest scale where the
   peak is significant, extended to the connected voxels above ``extend`` x the
   threshold, dilated, smoothed and brought back to the full box: the automatic focus
   mask (None when nothing is significant: "no heterogeneity found above noise").
4. :func:`component_labels` -- the residual maps (low-passed at that scale) inside that
   mask, their leading K - 1 principal components, and k-means with K clusters: an
   initial partition.

All functions are pure except :func:`residual_maps` and :func:`residual_batches` (they
read particles through an :class:`~tomohet.methods.em.EMEngine`). :func:`discover` runs
1-4 without holding the N maps (:class:`~tomohet.methods.residual_scan.ResidualScan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage

from tomohet.data.keys import particle_keys
from tomohet.methods.detection import (
    SCALES,
    Detection,
    shell_index,
    split_matrix,
    support_radius,
)
from tomohet.methods.dispersion import calibrate_noise
from tomohet.methods.noise_profile import with_noise_profile
from tomohet.methods.regions import candidate_regions, n_regions_for, soft_region
from tomohet.methods.residual_scan import (  # residual maps: made and streamed there
    ResidualScan,
    crop_to_small,
    kmeans_labels,
    residual_batches,
    residual_maps,
    small_box_for,
    upsample_mask,
)
from tomohet.methods.scale_candidates import candidates_over_scales
from tomohet.physics.forward import NoiseModel

if TYPE_CHECKING:
    from tomohet.methods.em import EMEngine

__all__ = ["Discovery", "small_box_for", "crop_to_small", "residual_maps", "residual_batches",
           "variance_map", "focus_from_variance", "upsample_mask", "component_labels",
           "discover", "Setup", "discover_with", "null_splits", "local_region", "support_radius"]


def variance_map(maps: torch.Tensor, radius: float | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxel variance over particles and its excess over the noise floor, as a z-map.

    maps (N, d, d, d). The floor at radius r is the median variance of the voxels at
    that radius (stationary noise, radially symmetric effects); z = (var / floor - 1) /
    (1.4826 MAD) of that ratio over voxels inside ``radius`` (default d/2 - 1).
    -> (variance (d, d, d), z (d, d, d), 0 outside ``radius``).
    """
    var = maps.double().var(0, unbiased=True).float()
    d = var.shape[-1]
    shell = shell_index(d)
    inside = shell <= (d / 2 - 1 if radius is None else radius)
    ratio = torch.zeros_like(var)
    for s in torch.unique(shell[inside]).tolist():
        sel = (shell == s) & inside
        ratio[sel] = var[sel] / var[sel].median().clamp_min(1e-30) - 1.0
    vals = ratio[inside]
    mad = (vals - vals.median()).abs().median().clamp_min(1e-12) * 1.4826
    z = torch.where(inside, (ratio - vals.median()) / mad, torch.zeros_like(ratio))
    return var, z


def focus_from_variance(z: torch.Tensor, threshold: float = 4.0, min_voxels: int = 2,
                        dilate: int = 2, max_fraction: float = 0.3,
                        extend: float | None = None) -> torch.Tensor | None:
    """The significant-excess region of a z-map as a soft mask on the same grid.

    Voxels with z > ``threshold`` in connected clusters of at least ``min_voxels`` or
    peaking at z >= 2 ``threshold`` (a small component on a coarse grid covers 1-3
    voxels: on the 10% / 6% ladder cell at box 32, 36 A voxels, component B is 3 voxels
    peaking at z 5.3; discovery's partition ARI rose from 0.29 to 0.54 with it); with
    ``extend``, each such cluster grows to the connected voxels above ``extend`` x
    ``threshold`` (hysteresis: a calibrated threshold finds the peak, the region around
    it is weaker). Then dilated by ``dilate`` voxels, edges smoothed (Gaussian, sd 0.7
    voxel). None when no cluster is significant, or when the region would exceed
    ``max_fraction`` of the box (a whole-box difference: nothing to focus on).
    (d, d, d) -> (d, d, d) in [0, 1].
    """
    zn = z.numpy()
    hot = zn > threshold
    lab, n = ndimage.label(hot)
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(hot, lab, index=idx)
    peaks = ndimage.maximum(zn, lab, index=idx)
    strong = (sizes >= min_voxels) | (np.asarray(peaks) >= 2 * threshold)
    keep = np.isin(lab, idx[strong])
    if not keep.any():
        return None
    if extend is not None:
        grown, _ = ndimage.label(zn > extend * threshold)
        keep = np.isin(grown, np.unique(grown[keep]))
    if dilate > 0:
        keep = ndimage.binary_dilation(keep, iterations=dilate)
    if keep.mean() > max_fraction:
        return None
    return soft_region(keep)


def component_labels(maps: torch.Tensor, mask: torch.Tensor | None, k: int,
                     order: np.ndarray, seed: int = 0) -> np.ndarray:
    """Initial classes: k-means (K) on the leading K - 1 principal components of the
    residual maps inside ``mask``.

    maps (N, d, d, d); mask (d, d, d) or None (all voxels); order (N,) a name-defined
    permutation (k-means runs on the rows in that order, so the result does not depend on
    the input row order). -> (N,) int64 labels.
    """
    n = maps.shape[0]
    x = maps.reshape(n, -1).double()
    if mask is not None:
        w = mask.reshape(-1).double()
        x = x[:, w > 0.05] * w[w > 0.05]
    x = x - x.mean(0, keepdim=True)
    r = max(1, min(k - 1, x.shape[1], n - 1))
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    return kmeans_labels((u[:, :r] * s[:r]).numpy(), k, order, seed)


@dataclass
class Discovery:
    """What :func:`discover` found. ``focus`` (D, D, D) or None; ``labels`` (N,) initial
    classes; ``z`` (d, d, d) the excess-variance z-map (the largest over scales);
    ``variance`` (d, d, d); ``small_box`` d; ``pixel_size_A`` of the small grid;
    ``region``: ``"local"`` (a focus mask), ``"large"`` (significant excess over more
    than ``max_fraction`` of the box: whole-subunit differences, nothing to focus on) or
    ``"none"`` (nothing above noise: "no heterogeneity found above noise");
    ``threshold`` the calibrated threshold on ``z``; ``p_value`` of its peak (None when
    not tested); ``scale`` the low-pass (voxels) the mask and partition come from."""

    focus: torch.Tensor | None
    labels: np.ndarray
    z: torch.Tensor
    variance: torch.Tensor
    small_box: int
    pixel_size_A: float
    region: str = "local"
    threshold: float = 4.0
    p_value: float | None = None
    scale: float = 0.0
    # separate regions (full box, first the most significant) and a two-class k-means
    # start inside each (:func:`tomohet.methods.regions.candidate_regions`)
    regions: list[torch.Tensor] = field(default_factory=list)
    region_labels: list[np.ndarray] = field(default_factory=list)
    search_radius: float | None = None  # small-grid voxels (:func:`support_radius`)
    # further regions below the variance test's threshold, for the held-out test of
    # :mod:`tomohet.methods.region_test` (when K wants more regions than were found):
    # (full-box mask, (N,) two-class k-means start from each particle's own half,
    # (N,) the start from all particles), by decreasing peak
    candidates: list[tuple[torch.Tensor, np.ndarray, np.ndarray]] = field(
        default_factory=list)
    region_tests: list[dict[str, object]] = field(default_factory=list)  # their results
    # the masks (full box) the regions were finally split in, regions first, then the
    # accepted candidates; redrawn from their splits
    # (:func:`tomohet.methods.factorial.region_posteriors`; shc: its last run)
    split_regions: list[torch.Tensor] = field(default_factory=list)
    noise_dispersion: float = 1.0  # the likelihood's (tomohet.methods.dispersion)
    noise_profile: dict | None = None  # subtomograms (tomohet.methods.noise_profile)

    @property
    def max_z(self) -> float:
        return float(self.z.max())

    def summary(self) -> dict[str, object]:
        """Plain facts for a run's summary.json."""
        frac = None if self.focus is None else float(self.focus.mean())
        return {"region": self.region, "max_z": round(self.max_z, 2),
                "threshold": round(self.threshold, 2),
                "p_value": None if self.p_value is None else round(self.p_value, 4),
                "scale_voxels": self.scale,
                "focus_fraction_of_box": frac, "n_regions": len(self.regions),
                "small_box": self.small_box,
                "small_pixel_size_A": self.pixel_size_A,
                "search_radius_A": None if self.search_radius is None
                else round(self.search_radius * self.pixel_size_A, 1),
                "n_candidates": len(self.candidates),
                "candidate_tests": list(self.region_tests),
                "split_region_fractions_of_box": [round(float(m.mean()), 5)
                                                  for m in self.split_regions],
                "noise_dispersion": round(self.noise_dispersion, 3),
                "noise_profile": self.noise_profile}


def null_splits(names, tomo_names, seed: int, n_splits: int) -> np.ndarray:
    """(n_splits, N) random halves of the particles for the null of
    :func:`~tomohet.methods.detection.detect`, drawn from their names (keyed hash,
    64 splits per key word), so that they do not depend on row order."""
    words = [particle_keys(names, tomo_names, seed, f"discovery-null/{w}")
             for w in range((n_splits + 63) // 64)]
    return split_matrix(np.stack(words, axis=1), n_splits)


def region_from(det: Detection, extend: float = 0.6, max_fraction: float = 0.3
                ) -> tuple[str, torch.Tensor | None, float]:
    """Region, focus mask (small grid) and scale from a detection: ``"none"`` when not
    significant; else the mask of the finest scale whose peak is significant (the best
    localised), grown to ``extend`` x threshold; ``"large"`` when it exceeds
    ``max_fraction`` of the box."""
    if not det.significant:
        return "none", None, 0.0
    peaks = det.z_scales.reshape(len(det.scales), -1).max(1).values
    i = int(np.nonzero((peaks > det.threshold).numpy())[0][0])
    focus = focus_from_variance(det.z_scales[i], det.threshold, min_voxels=1,
                                max_fraction=max_fraction, extend=extend)
    return ("local" if focus is not None else "large"), focus, float(det.scales[i])


def region_scale(det: Detection, fraction: float = 0.8) -> float:
    """The scale the regions are drawn at: the finest whose peak z is at least
    ``fraction`` of the best scale's (a finer scale draws tighter regions; a much
    weaker one misses the extent of a large component: ladder m30, SNR 0.05, peaks 5.1
    at the finest scale and 9.0 at the best, ARI 0.23 vs 0.93)."""
    peaks = det.z_scales.reshape(len(det.scales), -1).max(1).values.numpy()
    ok = np.nonzero(peaks >= fraction * peaks.max())[0]
    return float(det.scales[int(ok[0])])


def discover(engine, consensus: torch.Tensor, noise: NoiseModel | None, k: int,
             resolution_A: float | None = None, alpha: float = 0.01, n_null: int = 99,
             scales: tuple[float, ...] = SCALES, seed: int = 0,
             halves: np.ndarray | None = None, n_candidates: int = 3) -> Discovery:
    """Automatic focus mask and initial partition (see the module doc).

    ``resolution_A`` of the residual maps: default 4 pixels (at least 8 voxels across);
    ``alpha`` the false-positive rate of the test on data without heterogeneity,
    ``n_null`` half splits for its null. The residual maps are never all in memory
    (:class:`~tomohet.methods.residual_scan.ResidualScan`); the result does not depend on
    the batch size or the number of ranks. ``halves`` (N,) 0/1: with them, when K wants
    more regions than are significant (or none is), the best ``n_candidates`` further
    clusters inside the particle over all scales, each against its own scale's null
    (:func:`~tomohet.methods.scale_candidates.candidates_over_scales`), are kept for
    :mod:`tomohet.methods.region_test` (``Discovery.candidates``): the variance test
    misses small components the held-out test finds (held-out-like 5% / 3% cells at
    SNR 0.05).
    """
    box, px = engine.box, engine.px
    small = small_box_for(box, px, resolution_A or 4.0 * px)
    splits = null_splits(engine.names, engine.tomo_names, seed, n_null)
    batches = residual_batches(engine, consensus, noise, small)
    regions: list[torch.Tensor] = []
    region_labels: list[np.ndarray] = []
    # the maps are streamed: test statistics summed over ranks, rows kept on disk
    radius = support_radius(consensus, small)
    with ResidualScan(len(engine.index), small, splits, batches, scales) as scan:
        det = scan.detection(alpha)  # the whole box: whether, where first, at what scale
        confirm = scan.detection(alpha, radius)  # confined to the particle: more regions
        region, focus_small, scale = region_from(det)
        labels = scan.labels(scale, focus_small, k, engine.order, seed)
        candidates: list[tuple[torch.Tensor, np.ndarray, np.ndarray]] = []
        found: list[torch.Tensor] = []  # the regions' small-grid masks
        if region == "local":  # separate regions (not for whole-subunit differences)
            rs = region_scale(det)  # start: a two-class start in a mask (regions' rule)
            start = partial(scan.labels, rs, k=2, order=engine.order, seed=seed)
            for r in candidate_regions(det, rs, n_regions_for(k), confirm=confirm,
                                       start=start):
                if float(r.mean()) > 0.3:  # not a region: whole-box difference
                    break
                found.append(r)
                regions.append(upsample_mask(r, box))
                region_labels.append(scan.labels(rs, r, 2, engine.order, seed))
        if halves is not None and k >= 2 and (
                region == "none" or 0 < len(regions) < n_regions_for(k)):
            # for the held-out test: clusters inside the particle of every scale, each
            # against its own scale's null, apart from the regions found (scale_candidates)
            picked = candidates_over_scales(confirm, n_candidates, exclude=found)
            candidates = scan.candidate_starts([m for m, _ in picked],
                                               [s for _, s in picked], np.asarray(halves),
                                               engine.order, seed, box)
    focus = None if focus_small is None else upsample_mask(focus_small, box)
    return Discovery(focus, labels, det.z, det.variance, small, px * box / small, region,
                     det.threshold, det.p_value, scale, regions, region_labels, radius,
                     candidates)


def local_region(engine, model: torch.Tensor, noise: NoiseModel | None, small: int,
                 seed: int, alpha: float = 0.01) -> tuple[torch.Tensor, np.ndarray] | None:
    """Is there heterogeneity left among ``engine``'s particles? On the residual maps of
    ``engine``'s particles against ``model`` (D, D, D), streamed like :func:`discover`:
    the calibrated test at ``alpha`` (``ceil(1 / alpha)`` - 1 half-split nulls, at least
    99) over the whole box (as :func:`discover`'s first region), then the most
    significant region and a two-class k-means start inside it.
    -> (full-box mask, (n,) labels in the order of ``engine.index``) or None (fewer
    than 8 particles, or nothing local significant)."""
    n = len(engine.index)
    if n < 8:
        return None
    n_null = max(99, int(np.ceil(1.0 / alpha)) - 1)
    splits = null_splits(engine.names, engine.tomo_names, seed, n_null)
    batches = residual_batches(engine, model, noise, small)
    with ResidualScan(n, small, splits, batches) as scan:
        det = scan.detection(alpha)
        region, _, scale = region_from(det)
        masks = candidate_regions(det, scale, 1) if region == "local" else []
        if not masks:
            return None
        init = scan.labels(scale, masks[0], 2, engine.order, seed)
    return upsample_mask(masks[0], engine.box), init


@dataclass
class Setup:
    """How a classifier starts (:func:`discover_with`): ``engine`` to classify with
    (focused or not), ``plain`` the same particles without a focus mask (full maps),
    ``discovery`` (None when not run), ``from_components`` whether the first start is
    the discovery partition (else random subsets, annealed), ``focus`` the mask used,
    ``consensus`` (D, D, D) and its ``noise`` model (the residual maps')."""

    engine: EMEngine
    plain: EMEngine
    discovery: Discovery | None
    from_components: bool
    focus: torch.Tensor | None
    consensus: torch.Tensor | None = None
    noise: NoiseModel | None = None  # the consensus model's (the residual maps')


def discover_with(engine, k: int, focus_mask, init: str, halves: np.ndarray,
                  seed: int = 0) -> Setup:
    """Classifier glue for ``focus_mask`` (None, ``"auto"`` or a (D, D, D) tensor) and
    ``init`` (``"random"``, ``"components"``; ``"reference"`` counts as random here).

    ``engine``: unfocused, with the reference mask; halves (N,). Discovery runs for
    ``"auto"`` or ``"components"``: consensus, its noise, the subtomograms' noise profile
    (:mod:`~tomohet.methods.noise_profile`, on ``engine.particles``), dispersion
    (:mod:`~tomohet.methods.dispersion`, on ``engine.cfg``), :func:`discover`. Then:
    * ``region == "local"``: focus on it (``"auto"``; signal outside it subtracted) and
      start from the components; ``"large"``: no focus, start from the components;
    * ``"none"``: no focus, random annealed starts (as without discovery), unless the
      classifier finds one of ``Discovery.candidates`` real by the held-out test
      (:func:`tomohet.methods.factorial.region_posteriors`), which becomes the region.
    """
    from tomohet.methods.em import EMEngine

    auto = isinstance(focus_mask, str) and focus_mask == "auto"
    if isinstance(focus_mask, str) and not auto:
        raise ValueError(f"focus_mask must be None, 'auto' or a map, got {focus_mask!r}")
    if init not in ("random", "components", "reference"):
        raise ValueError(f"init must be 'random' or 'components', got {init!r}")
    user = None if auto or focus_mask is None else torch.as_tensor(focus_mask).float()
    if not auto and init != "components" and user is None:
        return Setup(engine, engine, None, False, None)
    n = len(engine.index)
    bp = engine.reconstruct_pass(np.ones((n, 1)), None, halves)
    consensus = engine.volumes_from(bp)[0][0]
    found, from_components, noise = None, False, None
    if auto or init == "components":
        noise = engine.noise_pass(consensus[None], np.zeros(n, dtype=np.int64))
        noise, profile = with_noise_profile(engine, consensus, noise)
        noise = calibrate_noise(engine, consensus, noise, seed)
        found = discover(engine, consensus, noise, k, seed=seed, halves=halves)
        found.noise_dispersion, found.noise_profile = engine.cfg.noise_dispersion, profile
        from_components = init == "components" and found.region != "none"
    focus = user if user is not None else (found.focus if auto and found is not None
                                           else None)
    if focus is None:
        return Setup(engine, engine, found, from_components, None, consensus, noise)
    focused = EMEngine(engine.particles, engine.cfg, engine.index, engine.reference_mask,
                       focus.to(engine.device), consensus.to(engine.device),
                       progress=engine.progress)
    return Setup(focused, engine, found, from_components, focus, consensus, noise)
