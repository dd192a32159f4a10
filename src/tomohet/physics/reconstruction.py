"""Weighted reconstruction from tilt images and subtomograms: averages, half maps, FSC.

Every reconstruction is ``V = sum H^* X w / (sum |H|^2 w + reg)`` in Fourier space, with
``H`` the image's transfer function (:mod:`tomohet.physics.forward`), ``w`` the inverse
noise power (1 when no noise model is given) and ``reg`` a Wiener term. The same code
serves the consensus average, class maps (with posterior weights) and per-particle
subtomograms (where the accumulated weight *is* the missing-wedge/CTF volume).

Tensors in, tensors out: particle batches become a
:class:`~tomohet.physics.forward.PreparedBatch` in :mod:`tomohet.data.prepare` (which
also builds per-particle subtomograms), and the loop over a whole particle set (the
consensus average with half maps) is :func:`tomohet.methods.average.average`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tomohet.physics.forward import NoiseModel, PreparedBatch
from tomohet.physics.fourier import freq_grid_3d, ft_to_volume, radial_shell_index, volume_to_ft
from tomohet.physics.fsc import fsc
from tomohet.physics.projection import Backprojector, scatter_plan, volumes_from_sums

__all__ = [
    "backproject",
    "backproject_samples",
    "wiener_reconstruct",
    "GoldStandardMaps",
    "gold_standard_maps",
    "shrink_class_differences",
]


def backproject(
    bp: Backprojector,
    prep: PreparedBatch,
    class_weights: torch.Tensor | None = None,
    noise: NoiseModel | None = None,
    rotation: torch.Tensor | None = None,
    volume_index: torch.Tensor | None = None,
) -> None:
    """Back-project a prepared batch (tilt images or subtomograms): the one insertion
    entry point for data.

    Inserts ``H^* X w`` and ``|H|^2 w`` with ``w = mask / (sigma2 M^2)`` (``sigma2`` = 1
    without ``noise``). Where it goes: ``class_weights`` (V, B) spread particles over the
    V volumes of ``bp`` (e.g. class posteriors); ``volume_index`` (B,) sends particle b
    to volume ``volume_index[b]`` only (one grid per particle: per-particle
    back-projection, at whatever ``bp.pad``); neither: the single volume. ``rotation``
    overrides ``prep.rotation`` (e.g. the best pose of a local search, or the tilt
    rotations alone for a subtomogram in the tomogram frame).
    """
    w = prep.mask.float()
    if noise is not None:
        w = w / noise.per_pixel(prep.group)
    # premultiplied data: X = M (H V + n) -> divide noise power by M^2 as well
    w = w / prep.premult_power.clamp_min(1e-6)
    data = prep.transfer.conj() * prep.data * w
    weight = (prep.transfer.real**2 + prep.transfer.imag**2) * w
    rot = prep.rotation if rotation is None else rotation
    if prep.geometry == "subtomo":
        _insert_subtomograms(bp, data, weight, rot, class_weights, volume_index)
        return
    b, t = prep.mask.shape[:2]
    d, dh = data.shape[-2:]
    vw = vidx = None
    if class_weights is not None:
        vw = class_weights[:, :, None].expand(-1, b, t).reshape(class_weights.shape[0], b * t)
    if volume_index is not None:
        vidx = volume_index.to(data.device).repeat_interleave(t)
    bp.insert(data.reshape(b * t, d, dh), weight.reshape(b * t, d, dh),
              rot.reshape(b * t, 3, 3), volume_weights=vw, volume_index=vidx)


def backproject_samples(
    bp: Backprojector,
    freqs: torch.Tensor,
    data: torch.Tensor,
    transfer: torch.Tensor,
    weight: torch.Tensor,
    mate_in_input: torch.Tensor,
    volume_index: torch.Tensor | None = None,
) -> None:
    """Back-project flat Fourier samples (ragged batches, e.g. the VAE's masked pixels),
    as :func:`backproject` does a prepared batch.

    freqs (M, 3) cycles/pixel (x, y, z) in the reference frame; data X, transfer H (M,)
    complex; weight w (M,) per sample (e.g. ``cos(tilt) / M^2``); mate_in_input (M,) bool:
    samples whose Friedel mate is also among the samples (kx = 0), which carry half
    weight. Inserts ``H^* X w`` and ``|H|^2 w`` and their mates into volume
    ``volume_index`` (M,) of each sample (None: the single volume).
    """
    vals = transfer.conj() * data * weight
    wts = (transfer.real**2 + transfer.imag**2) * weight
    plan = scatter_plan(freqs, vals, wts, mate_in_input, bp.padded)
    bp.insert_plan(plan, len(vals), volume_index=volume_index)


def _insert_subtomograms(
    bp: Backprojector,
    data_rfft: torch.Tensor,
    weight_rfft: torch.Tensor,
    rotation: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    volume_index: torch.Tensor | None = None,
) -> None:
    """Rotate subtomogram transforms into the reference frame and accumulate them.

    data_rfft (B, D, D, Dh) complex: weight-premultiplied data (``sum CTF X``);
    weight_rfft (B, D, D, Dh): ``sum CTF^2``; rotation (B, 3, 3) reference -> subtomogram.
    A subtomogram sample at frequency ``k`` is the reference at ``A.T k``.
    """
    d = data_rfft.shape[-3]
    k3 = freq_grid_3d(d, device=data_rfft.device)  # (D, D, Dh, 3) in subtomo frame
    ref = torch.einsum("bji,zyxj->bzyxi", rotation.float(), k3)  # A.T k
    plan = scatter_plan(ref, data_rfft, weight_rfft.float(), k3[..., 0] == 0, bp.padded)
    bp.insert_plan(plan, data_rfft.shape[0], volume_weights=class_weights,
                   volume_index=volume_index)


def wiener_reconstruct(
    bp: Backprojector, fsc_curve: torch.Tensor | None = None, reg: float = 1e-3
) -> torch.Tensor:
    """Volumes from a back-projector, regularised by the FSC-derived SNR when given.

    With an FSC, ``reg(shell) = mean_weight(shell) * (1 - FSC) / FSC`` (weight / SNR);
    otherwise a small constant relative to the mean weight. -> (K, D, D, D).
    A volume that received no weight at all is zero (never 0/0).
    """
    data, weight = bp.grids()
    if fsc_curve is None:
        return volumes_from_sums(data, weight, bp.box, reg)
    p, pad = bp.padded, bp.pad
    c = torch.arange(p, device=weight.device) - p // 2
    gz, gy, gx = torch.meshgrid(c, c, c, indexing="ij")
    shell = torch.round(torch.sqrt(gx**2 + gy**2 + gz**2).float() / pad).long()
    n_sh = len(fsc_curve)
    shell = shell.clamp_max(n_sh - 1)
    curve = torch.nan_to_num(fsc_curve.to(weight.device).float(), nan=0.0).clamp(1e-3, 0.999)
    # full-map SNR from half-map FSC: FSC_full = 2 FSC / (1 + FSC)
    full = 2 * curve / (1 + curve)
    ssnr = full / (1 - full)
    mean_w = torch.zeros(weight.shape[0], n_sh, device=weight.device)
    cnt = torch.zeros(n_sh, device=weight.device).index_add_(
        0, shell.reshape(-1), torch.ones(shell.numel(), device=weight.device))
    for k in range(weight.shape[0]):
        mean_w[k].index_add_(0, shell.reshape(-1), weight[k].reshape(-1))
    mean_w = mean_w / cnt.clamp_min(1)
    reg_vox = (mean_w / ssnr[None])[:, shell]  # (K, P, P, P)
    # a floor per volume keeps 0/0 away where a volume (or all) received no weight
    top = mean_w.amax(1)
    floor = torch.where(top > 0, 1e-6 * top, torch.ones_like(top))
    return volumes_from_sums(data, weight, bp.box, reg_vox + floor[:, None, None, None])


@dataclass
class GoldStandardMaps:
    """Result of :func:`gold_standard_maps` for K classes.

    half_maps (2K, D, D, D): class c, half h at 2c + h; maps (K, D, D, D): both halves
    merged and Wiener-filtered by the half-map FSC; fsc (K, D//2 + 1); empty (K,) bool:
    classes that received no weight (their maps and FSC are zero).
    """

    half_maps: torch.Tensor
    maps: torch.Tensor
    fsc: torch.Tensor
    empty: torch.Tensor


def gold_standard_maps(bp: Backprojector, tau_fudge: float = 1.0,
                       fsc_mask: torch.Tensor | None = None) -> GoldStandardMaps:
    """Half sets -> half maps -> FSC -> one merged, FSC-Wiener-filtered map per class.

    ``bp`` holds 2K volumes, class c half h at 2c + h. The merged map uses the SNR implied
    by ``tau_fudge`` x FSC (capped at 0.999). Safe on empty input: a class (or half) that
    received no weight gives zero maps and a zero FSC, never NaN.

    ``fsc_mask`` (D, D, D): the FSC (and so the Wiener filter) is measured on the masked
    half maps. Focused classification needs it: after signal subtraction the signal is a
    few % of the box, and a whole-box FSC would damp it to nothing, by a different
    amount per class.
    """
    if bp.n_volumes % 2:
        raise ValueError(f"gold_standard_maps needs 2 half sets per class, got "
                         f"{bp.n_volumes} volumes")
    k = bp.n_volumes // 2
    half_maps = wiener_reconstruct(bp)
    data, weight = bp.grids()
    empty = (weight.reshape(k, -1) > 0).sum(1) == 0
    if fsc_mask is None:
        curves = fsc(half_maps[0::2], half_maps[1::2])  # (K, D//2 + 1)
    else:
        m = fsc_mask.to(half_maps.device, half_maps.dtype)
        curves = fsc(half_maps[0::2] * m, half_maps[1::2] * m)
    merged = Backprojector(bp.box, 1, bp.pad, data.device)
    maps = []
    for c in range(k):
        merged.data = (data[2 * c] + data[2 * c + 1]).reshape(1, -1)
        merged.weight = (weight[2 * c] + weight[2 * c + 1]).reshape(1, -1)
        boosted = (curves[c] * tau_fudge).clamp_max(0.999)
        maps.append(wiener_reconstruct(merged, boosted)[0])
    return GoldStandardMaps(half_maps, torch.stack(maps), curves, empty.cpu())


def shrink_class_differences(maps: torch.Tensor, half_maps: torch.Tensor,
                             class_weight: torch.Tensor, tau_fudge: float = 1.0,
                             fsc_mask: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Wiener-filter what tells the classes apart by its own FSC (issue 12).

    Each class map is filtered by its half-map FSC (:func:`gold_standard_maps`). That FSC
    measures everything the class shares with the others too (the complex; after signal
    subtraction, the consensus's own Wiener deficit), so it stays high where the
    *difference* between classes is noise. Those shells then carry noise that differs
    from class to class, smaller in a larger class: particles are drawn to the larger
    class, and a small component is lost (ladder ``m05-snr0.05``: the B split drifted
    from the true labels, populations 0.5 -> 0.24, at a masked class FSC of 0.45 at
    32 A). Here every class map is split into the weighted mean ``u = sum_k pi_k m_k``
    and its difference ``m_k - u``; the difference is filtered by the FSC of the half
    maps' differences ``d_kh = h_kh - sum_j pi_j h_jh`` (inside ``fsc_mask`` when
    given): ``m_k' = u + g_k (m_k - u)`` with ``g = s / (1 + s)``, ``s = T F / (1 - F)``
    and ``F = 2 FSC_d / (1 + FSC_d)`` the full-map FSC (``T`` = ``tau_fudge``).

    maps (K, D, D, D); half_maps (2K, D, D, D), class c half h at 2c + h; class_weight
    (K,) >= 0 (the classes' summed reconstruction weight: ``pi``). Classes of weight 0
    are left as they are and take no part in ``u``. -> (maps (K, D, D, D), the
    difference FSC (K, D//2 + 1); 0 for a class left as it was).
    """
    k, d = maps.shape[0], maps.shape[-1]
    n_sh = d // 2 + 1
    w = class_weight.to(maps.device, torch.float64).clamp_min(0)
    live = w > 0
    curves = torch.zeros((k, n_sh), dtype=maps.dtype, device=maps.device)
    if int(live.sum()) < 2:
        return maps, curves
    pi = (w / w.sum()).to(maps.dtype)
    halves = half_maps.reshape(k, 2, *maps.shape[1:])
    mean_h = torch.einsum("k,khzyx->hzyx", pi, halves)
    diff_h = halves - mean_h[None]
    m = 1.0 if fsc_mask is None else fsc_mask.to(maps.device, maps.dtype)
    curves[live] = fsc(diff_h[live, 0] * m, diff_h[live, 1] * m).to(maps.dtype)
    half = curves.clamp(0.0, 0.998)  # a negative FSC (-1 at worst) carries nothing
    full = 2 * half / (1 + half)
    snr = tau_fudge * full / (1 - full)
    gain = snr / (1 + snr)  # (K, S)
    shell = radial_shell_index(d, 3, device=maps.device).clamp_max(n_sh - 1)
    mean = torch.einsum("k,kzyx->zyx", pi, maps)
    diff = volume_to_ft(maps - mean[None]) * gain[:, shell]
    out = torch.where(live[:, None, None, None], mean[None] + ft_to_volume(diff, d), maps)
    return out, curves
