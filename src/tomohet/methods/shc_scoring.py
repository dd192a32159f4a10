"""Scoring pieces of stochastic hill climbing (:mod:`tomohet.methods.shc`): the annealing
schedule, the resolution that limits the scoring band, normalised cross-correlation of
particles with class references (dense, and on the compacted pixels of
:mod:`tomohet.physics.compact`), the figure-of-merit filter of half maps, and the renaming
of half-set sums after half 1's classes are matched to half 0's.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.physics.compact import CompactBatch
from tomohet.physics.forward import PreparedBatch
from tomohet.physics.fourier import (
    ft_to_volume,
    hermitian_weights_2d,
    hermitian_weights_3d,
    radial_shell_index,
    volume_to_ft,
)
from tomohet.physics.fsc import fsc, resolution_at
from tomohet.physics.projection import Backprojector

__all__ = ["climb_step", "temperature_schedule", "band_resolution", "ncc_scores",
           "ncc_scores_compact", "pixel_weights", "distance_from_sums",
           "figure_of_merit_filter", "half_map_fsc", "rename_half_one"]


def temperature_schedule(iteration: int, t0: float, anneal_iters: int) -> float:
    """Linear fall from ``t0`` at iteration 0 to 0 at ``anneal_iters`` (STOPGAP)."""
    if anneal_iters <= 0:
        return 0.0
    return max(0.0, t0 * (1 - iteration / anneal_iters))


def band_resolution(curves: list[list[float]] | np.ndarray, pixel_size_A: float,
                    threshold: float = 0.143) -> float | None:
    """Resolution (A) that limits the scoring band: the worst FSC-``threshold`` resolution
    among the classes that resolve anything (FSC >= ``threshold`` at shell 1). A class
    with FSC 0 (empty, or pure noise) does not narrow the band; None when no class
    resolves anything (then the band is not limited by resolution)."""
    c = np.asarray(curves, dtype=float)
    if c.ndim != 2 or c.shape[1] < 2:
        return None
    resolved = [resolution_at(row, pixel_size_A, threshold) for row in c
                if np.isfinite(row[1]) and row[1] >= threshold]
    return max(resolved) if resolved else None


def ncc_scores(prep: PreparedBatch, model: torch.Tensor, band: torch.Tensor,
               distance: bool = False) -> torch.Tensor:
    """Normalised cross-correlation of data with each model, where the data has signal.

    model (M, B, ...) reference transforms in each item's frame; band: bool shell mask of
    the trailing frequency shape. Tilt stacks are scored over all visible tilts together.
    ``distance``: instead ``Re<X, HV> - |HV|^2 / 2``, which is ``-|X - HV|^2 / 2`` up to
    a per-particle constant (:func:`distance_from_sums`). -> (B, M).
    """
    d = prep.data.shape[-2]
    herm = (hermitian_weights_2d(d, prep.data.device) if prep.geometry == "tilt"
            else hermitian_weights_3d(d, prep.data.device))
    w = (prep.mask & band).float() * herm
    pred = model * prep.transfer
    num = ((prep.data.conj() * pred).real * w).flatten(2).sum(-1)  # (M, B)
    p2 = ((pred.real**2 + pred.imag**2) * w).flatten(2).sum(-1)
    x2 = ((prep.data.real**2 + prep.data.imag**2) * w).flatten(1).sum(-1)  # (B,)
    if distance:
        return distance_from_sums(num.T, p2.T)
    return (num / torch.sqrt(p2 * x2[None]).clamp_min(1e-20)).T


def distance_from_sums(num: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Minus half the squared distance of data X from model HV, up to the same constant
    |X|^2 / 2 for every class of a particle: ``num - p2 / 2`` with num = Re<X, HV> and
    p2 = |HV|^2 (B, K). Used by region splits (:mod:`tomohet.methods.shc_regions`),
    whose references are differences from the consensus: their directions can be
    nearly equal (what both classes differ from the consensus by), which normalised
    cross-correlation cannot tell apart, while the distance compares them at their
    size (the midpoint between the two class means)."""
    return (num - 0.5 * p2).float()


def pixel_weights(band: torch.Tensor) -> torch.Tensor:
    """Flat weight of every rfft pixel (2D band) or voxel (3D band) in the scores of
    :func:`ncc_scores_compact`: its Hermitian multiplicity inside ``band``, else 0."""
    d = band.shape[0]
    herm = (hermitian_weights_2d(d, band.device) if band.ndim == 2
            else hermitian_weights_3d(d, band.device))
    return (herm * band).reshape(-1)


def ncc_scores_compact(cb: CompactBatch, model: torch.Tensor, weight: torch.Tensor,
                       distance: bool = False) -> torch.Tensor:
    """:func:`ncc_scores` on the kept pixels of a compact batch.

    model (K, M): the K references at the kept pixels
    (:func:`~tomohet.physics.compact.project_compact`, one trilinear plan for all K);
    weight (M,): each pixel's weight (:func:`pixel_weights` at ``cb.pixel``; 0 leaves it
    out; ``distance``: as :func:`ncc_scores`). -> (B, K), every particle's pixels (all
    its tilts) together.
    """
    k = model.shape[0]
    a = cb.data.conj() * cb.transfer * weight  # Re(X^* H V) = Re(a V), shared by K
    b = (cb.transfer.real**2 + cb.transfer.imag**2) * weight  # |H V|^2 = b |V|^2
    v = torch.view_as_real(model.T)  # (M, K, 2)
    vr, vi = v[..., 0], v[..., 1]
    terms = torch.empty((v.shape[0], 2 * k + 1), device=v.device)  # num, |HV|^2, |X|^2
    torch.mul(vr, a.real[:, None], out=terms[:, :k])
    terms[:, :k].addcmul_(vi, a.imag[:, None], value=-1)
    torch.mul(vr, vr, out=terms[:, k : 2 * k])
    terms[:, k : 2 * k].addcmul_(vi, vi).mul_(b[:, None])
    terms[:, 2 * k] = (cb.data.real**2 + cb.data.imag**2) * weight
    # per-image sums (a tilt image has at most D (D/2 + 1) pixels: float32), then per
    # particle in float64; a subtomogram's many voxels are summed in float64 directly
    wide = cb.n_tilts == 1
    per_img = torch.zeros((cb.n_particles * cb.n_tilts, 2 * k + 1), device=v.device,
                          dtype=torch.float64 if wide else torch.float32)
    per_img.index_add_(0, cb.image, terms.double() if wide else terms)
    sums = per_img.double().reshape(cb.n_particles, cb.n_tilts, -1).sum(1)
    if distance:
        return distance_from_sums(sums[:, :k], sums[:, k : 2 * k])
    den = torch.sqrt(sums[:, k : 2 * k] * sums[:, 2 * k :]).clamp_min(1e-20)
    return (sums[:, :k] / den).float()


def figure_of_merit_filter(half_maps: torch.Tensor, shared: bool = False,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Weight each class's half maps per shell by sqrt(FSC) of its own two halves.

    (2K, D, D, D) -> (2K, D, D, D), class c half h at 2c + h. sqrt(FSC) estimates a half
    map's correlation with the noise-free map, so shells a class resolves poorly are
    damped. Without it a class averaged from fewer particles carries more noise power
    and scores lower against every particle under normalised cross-correlation, and
    hill climbing drains it (rich-get-richer collapse).

    ``shared``: every class weighted by sqrt of the classes' mean FSC. Region splits
    (:mod:`tomohet.methods.shc_regions`) need it: their references are differences from
    the consensus, and what both classes differ from it by (the part the consensus's
    own filtering left out) is large; weighted per class by unequal FSCs it no longer
    cancels between the two classes' scores, and its pose-dependent correlation with
    each particle outweighs the component.
    ``mask`` (D, D, D): the FSC measured on the masked half maps (:func:`half_map_fsc`).
    Region splits pass their region: their difference maps are large outside it (the
    consensus's misfit, the same in both halves), which would pass for signal and
    leave the region's noise undamped.
    """
    d = half_maps.shape[-1]
    k = half_maps.shape[0] // 2
    pairs = half_maps.reshape(k, 2, d, d, d)
    curve = half_map_fsc(half_maps, mask).clamp(0.0, 1.0)  # (K, D//2 + 1)
    if shared:
        curve = curve.mean(0, keepdim=True).expand_as(curve).clone()
    curve[:, 0] = 1.0
    shell = radial_shell_index(d, 3, device=half_maps.device).clamp_max(curve.shape[1] - 1)
    weight = torch.sqrt(curve)[:, shell]  # (K, D, D, D//2 + 1)
    ft = volume_to_ft(pairs) * weight[:, None]
    return ft_to_volume(ft, d).reshape(2 * k, d, d, d)


def half_map_fsc(half_maps: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """FSC (K, D//2 + 1) of each class's two half maps (2K, D, D, D; class c half h at
    2c + h), measured on the masked maps with ``mask`` (D, D, D), as
    :func:`~tomohet.physics.reconstruction.gold_standard_maps` measures it."""
    if mask is None:
        return fsc(half_maps[0::2], half_maps[1::2])
    m = mask.to(half_maps.device, half_maps.dtype)
    return fsc(half_maps[0::2] * m, half_maps[1::2] * m)


def rename_half_one(bp: Backprojector, rename: np.ndarray) -> None:
    """In place: half-1 sums of class c become those of class ``rename[c]`` (volumes
    ordered class c, half h at 2c + h), instead of back-projecting again."""
    k = len(rename)
    order = np.arange(2 * k)
    order[2 * rename + 1] = 2 * np.arange(k) + 1
    perm = torch.as_tensor(order, device=bp.data.device)
    bp.data, bp.weight = bp.data[perm], bp.weight[perm]


def climb_step(scores: np.ndarray, current: np.ndarray, temp: float,
               draws: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """One stochastic hill-climbing (annealing) step for all particles -> new labels.

    scores (N, K, J): a class scores its best pose candidate. Other classes are visited
    in random order; the first that beats the current score (or, at temperature T,
    any with probability T/100) is taken. ``draws``: two (N, K) uniforms per particle
    (visiting order, acceptance), drawn from the particle names.
    """
    n, k, _ = scores.shape
    u_order, u_accept = draws
    best = scores.max(axis=2)  # (N, K)
    now = best[np.arange(n), current]
    order = u_order.argsort(axis=1, kind="stable")
    better = best > now[:, None] + 1e-12
    lucky = u_accept < temp / 100.0
    acceptable = (better | lucky) & (np.arange(k)[None] != current[:, None])
    ranked = np.take_along_axis(acceptable, order, axis=1)
    first = ranked.argmax(axis=1)
    has = ranked[np.arange(n), first]
    return np.where(has, order[np.arange(n), first], current)
