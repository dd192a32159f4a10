"""A region's mask redrawn from its own split (issue 12).

A region's mask comes from the variance map (:mod:`tomohet.methods.discovery`): for a
further component, from a candidate below the variance test's threshold, so from a few
noisy voxels near the component's peak. Once the region is split in two, the particles
themselves say where the two classes differ, far more clearly: the posterior-weighted
mean of each class's residual maps (each particle's residual against the consensus,
back-projected and low-passed, as discovery makes them) differs by the component, and
the same difference on each gold-standard half gives its noise.

On the ladder cell ``m30-snr0.02-n300`` component B's candidate mask covered 36% of B's
true region: B's split reached ARI 0.268, against 0.526 inside B's true region. Redrawn
once from the split's own difference (86% of B covered), the split from the same labels
reached 0.517; A's 0.809 -> 0.846 (0.858 in its true region). On ``m05-snr0.05-n300``
B's 0.228 -> 0.261 (0.241 in the true region), A's 0.566 -> 0.536. In ml2d, redrawn until
the mask stops changing (:data:`tomohet.methods.factorial.MAX_REDRAWS`), the four-state
ARI of those cells went 0.470 -> 0.570 and 0.303 -> 0.323 (oracle 0.781 and 0.460).

* :func:`difference_z` -- (pure) the z-map of the class difference against its noise;
* :func:`redrawn_region` -- (pure) the clusters of that z-map which the old mask touches;
* :func:`refine_region` -- both, with the residual maps streamed through the consensus
  model of a :class:`~tomohet.methods.discovery.Setup` (nothing of size N d^3 is kept;
  sums over ranks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage

from tomohet import parallel
from tomohet.methods.detection import gaussian_lowpass, shell_index
from tomohet.methods.regions import soft_region
from tomohet.methods.residual_scan import residual_batches, upsample_mask

if TYPE_CHECKING:
    from tomohet.methods.discovery import Setup

__all__ = ["difference_z", "redrawn_region", "downsample_mask", "refine_region",
           "same_region"]


def difference_z(sums: torch.Tensor, weights: torch.Tensor, sigma: float = 1.0,
                 radius: float | None = None) -> torch.Tensor:
    """|class 1 - class 0| of posterior-weighted mean maps in units of its noise.

    sums (2, 2, d, d, d): [half h, class c] = sum_n p_nc r_n over the particles of half
    h; weights (2, 2) = sum_n p_nc. The difference of the class means on each half,
    ``D_h``, low-passed (Gaussian, sd ``sigma`` voxels): the signal is ``(D_0 + D_1) / 2``,
    its noise ``(D_0 - D_1) / 2`` (the same noise, no signal), whose sd over the voxels
    inside ``radius`` (default d/2 - 1) is the unit. -> (d, d, d) >= 0, 0 outside
    ``radius``; zeros when a class of a half has no weight.
    """
    d = sums.shape[-1]
    if bool((weights <= 0).any()):
        return torch.zeros((d, d, d))
    means = sums.double() / weights.double()[..., None, None, None]
    diff = means[:, 1] - means[:, 0]  # (2, d, d, d)
    smooth = gaussian_lowpass(torch.stack([diff[0] + diff[1], diff[0] - diff[1]]).float() / 2,
                              sigma)
    inside = shell_index(d) <= (d / 2 - 1 if radius is None else radius)
    sd = float(smooth[1][inside].std())
    if not sd > 0:
        return torch.zeros((d, d, d))
    return torch.where(inside, smooth[0].abs() / sd, torch.zeros(()))


def redrawn_region(z: torch.Tensor, old: torch.Tensor, threshold: float = 3.0,
                   fraction: float = 0.3, dilate: int = 1, max_fraction: float = 0.3,
                   exclude: torch.Tensor | None = None) -> torch.Tensor | None:
    """The connected clusters of ``z`` above ``max(threshold, fraction x peak)`` that the
    old mask touches (``peak`` the largest z inside it), dilated by ``dilate`` voxels,
    outside ``exclude`` (other regions), edges smoothed as discovery's regions.

    z (d, d, d); old, exclude (d, d, d) in [0, 1] (voxels > 0.5 count). -> (d, d, d) in
    [0, 1], or None when the peak inside the old mask is not above ``threshold`` (the
    split found nothing to redraw from), or the region would exceed ``max_fraction`` of
    the box.
    """
    inside = (old > 0.5).numpy()
    zn = z.numpy()
    if not inside.any() or float(zn[inside].max()) <= threshold:
        return None
    hot = zn > max(threshold, fraction * float(zn[inside].max()))
    lab, _ = ndimage.label(hot)
    ids = np.unique(lab[inside & (lab > 0)])
    region = np.isin(lab, ids)
    if dilate > 0:
        region = ndimage.binary_dilation(region, iterations=dilate)
    if exclude is not None:
        region &= ~(exclude > 0.5).numpy()
    if not region.any() or region.mean() > max_fraction:
        return None
    return soft_region(region)


def downsample_mask(mask: torch.Tensor, small: int) -> torch.Tensor:
    """A full-box mask (D, D, D) averaged onto the small grid (d, d, d)."""
    return torch.nn.functional.adaptive_avg_pool3d(mask.float()[None, None], small)[0, 0]


def refine_region(setup: Setup, post: np.ndarray, halves: np.ndarray, mask: torch.Tensor,
                  exclude: list[torch.Tensor] | None = None, sigma: float = 1.0
                  ) -> torch.Tensor | None:
    """The mask of a split region redrawn from the split (the module doc).

    post (N, 2) the split's posteriors (or one-hot labels) for every particle of
    ``setup.plain``; halves (N,) 0/1; mask (D, D, D) the region's mask; exclude: other
    regions' masks (D, D, D), kept out. One residual pass (the consensus model, the
    discovery's noise model and small grid). -> (D, D, D) in [0, 1] or None (nothing to
    redraw from: keep the mask).
    """
    found, plain = setup.discovery, setup.plain
    if found is None or setup.consensus is None:
        return None
    small = found.small_box
    sums = torch.zeros((2, 2, small, small, small), dtype=torch.float64)
    weights = torch.zeros((2, 2), dtype=torch.float64)
    p = torch.as_tensor(np.asarray(post), dtype=torch.float64)
    onehot = torch.eye(2, dtype=torch.float64)[torch.as_tensor(np.asarray(halves))]  # (N, 2)
    for rows, maps in residual_batches(plain, setup.consensus, setup.noise, small):
        idx = torch.as_tensor(rows)
        hw = onehot[idx][:, :, None] * p[idx][:, None, :]  # (b, half, class)
        sums += torch.einsum("nhc,nzyx->hczyx", hw, maps.double())
        weights += hw.sum(0)
    parallel.all_reduce_sum([sums, weights])
    z = difference_z(sums, weights, sigma, found.search_radius)
    others = None
    if exclude:
        others = torch.stack([downsample_mask(m.cpu(), small) for m in exclude]).amax(0)
    new = redrawn_region(z, downsample_mask(mask.cpu(), small), exclude=others)
    return None if new is None else upsample_mask(new, plain.box)


def same_region(a: torch.Tensor, b: torch.Tensor, dice: float = 0.9) -> bool:
    """Whether two masks (same shape, in [0, 1]) cover the same voxels: the Dice
    overlap of their cores (> 0.5) is at least ``dice`` (both empty: the same)."""
    ca, cb = a > 0.5, b > 0.5
    total = int(ca.sum()) + int(cb.sum())
    return total == 0 or 2 * int((ca & cb).sum()) / total >= dice
