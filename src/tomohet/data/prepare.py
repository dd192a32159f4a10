"""Particle batches -> the tensors of the physics layer.

The physics layer (:mod:`tomohet.physics`) takes and returns tensors only. This module is
the adapter between it and the containers of :mod:`tomohet.data.particles`: a
:class:`~tomohet.data.particles.TiltBatch` or
:class:`~tomohet.data.particles.SubtomoBatch` plus the data set's
:class:`~tomohet.data.particles.Optics` become a
:class:`~tomohet.physics.forward.PreparedBatch` (observed transforms, transfer
functions, masks, noise scale, tilt groups, rotations), which the likelihood
(:func:`~tomohet.physics.forward.log_likelihoods`) and the back-projector
(:func:`~tomohet.physics.reconstruction.backproject`) consume.
"""

from __future__ import annotations

import torch

from tomohet.data.particles import Optics, SubtomoBatch, TiltBatch
from tomohet.physics.ctf import ctf_2d, dose_mask, exposure_filter
from tomohet.physics.forward import PreparedBatch, tilt_groups
from tomohet.physics.fourier import (
    image_to_ft,
    radial_shell_index,
    shift_phase_2d,
    volume_to_ft,
)
from tomohet.physics.projection import Backprojector
from tomohet.physics.reconstruction import backproject

__all__ = ["prepare_batch", "prepare_subtomo_batch", "backproject_subtomograms",
           "reconstruct_subtomograms"]


def prepare_batch(
    batch: TiltBatch,
    optics: Optics,
    max_resolution_A: float | None = None,
    group_width_deg: float = 10.0,
    use_dose_mask: bool = True,
) -> PreparedBatch:
    """Transforms, transfer functions and masks of a batch. See :class:`PreparedBatch`."""
    d, px = optics.box, optics.pixel_size_A
    data = image_to_ft(batch.images)
    ctf = ctf_2d(
        batch.defocus_u_A, batch.defocus_v_A, batch.defocus_angle_deg, d, px, optics.ctf_params
    )
    expo = exposure_filter(batch.dose_e_per_A2, d, px)
    h = ctf * expo * batch.ctf_scale[..., None, None]
    m = torch.ones_like(h)
    if optics.ctf_premultiplied:
        m = m * ctf
    if optics.dose_weighted:
        m = m * expo
    phase = shift_phase_2d(batch.shift_A / px, d)
    transfer = (m * h).to(torch.complex64) * phase
    mask = batch.visible[..., None, None].expand(h.shape).clone()
    if use_dose_mask:
        mask &= dose_mask(batch.dose_e_per_A2, d, px)
    else:
        k = radial_shell_index(d, 2, device=h.device)
        mask &= k <= d // 2
    if max_resolution_A is not None:
        shell = radial_shell_index(d, 2, device=h.device)
        mask &= shell <= d * px / max_resolution_A
    if optics.ctf_premultiplied or optics.dose_weighted:
        mask &= m.abs() > 1e-3
    return PreparedBatch(
        data=data, transfer=transfer, mask=mask, premult_power=m**2,
        group=tilt_groups(batch.tilt_deg, group_width_deg), rotation=batch.rotation,
        visible=batch.visible, tilt_deg=batch.tilt_deg,
    )




def prepare_subtomo_batch(
    batch: SubtomoBatch, optics: Optics, max_resolution_A: float | None = None
) -> PreparedBatch:
    """Subtomograms and their 3D CTF/wedge volumes as a :class:`PreparedBatch`.

    Premultiplied data (RELION 4 pseudo-subtomograms: ``sum CTF X`` with weights
    ``sum CTF^2``) have transfer = noise scale = weight; plain reconstructions with a 3D
    CTF (RELION 3.0) have transfer = CTF volume and unit noise scale. Either noise scale is
    multiplied by the batch's ``noise_power`` (a :class:`~tomohet.data.particles.NoiseProfile`)
    when it has one.
    """
    d = optics.box
    data = volume_to_ft(batch.volumes)
    if batch.weights is None:
        transfer = torch.ones(data.shape, device=data.device)
    else:
        transfer = batch.weights.float()
    premult_power = (transfer.clamp_min(0) if optics.ctf_premultiplied
                     else torch.ones_like(transfer))
    if batch.noise_power is not None:  # noise not white within a shell (NoiseProfile)
        premult_power = premult_power * batch.noise_power.to(premult_power)
    shell = radial_shell_index(d, 3, device=data.device)
    limit = d // 2 if max_resolution_A is None else min(d // 2,
                                                        d * optics.pixel_size_A / max_resolution_A)
    mask = (shell <= limit).expand(data.shape).clone()
    mask &= transfer.abs() > 1e-3
    b = data.shape[0]
    return PreparedBatch(
        data=data, transfer=transfer.to(torch.complex64), mask=mask, premult_power=premult_power,
        group=torch.zeros(b, dtype=torch.long, device=data.device), rotation=batch.rotation,
        visible=torch.ones(b, dtype=torch.bool, device=data.device), geometry="subtomo",
    )


def _tomogram_frame(batch: TiltBatch, optics: Optics) -> PreparedBatch:
    """The prepared tilt images of a batch with their rotations in the tomogram frame
    (the particle rotation dropped from ``R = P A``)."""
    if batch.particle_rotation is None:
        raise ValueError("batch has no particle rotations")
    prep = prepare_batch(batch, optics)
    prep.rotation = prep.rotation @ batch.particle_rotation[:, None].transpose(-1, -2)
    return prep


def _per_particle_sums(prep: PreparedBatch, box: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-project each particle of ``prep`` into its own grid, built on the image grid
    itself (pad 1) -> the (data, weight) sums in the rfft layout (B, D, D, D//2+1)."""
    b = prep.mask.shape[0]
    bp = Backprojector(box, n_volumes=b, pad=1, device=prep.data.device)
    backproject(bp, prep, volume_index=torch.arange(b, device=prep.data.device))
    return bp.rfft_grids()


def backproject_subtomograms(
    batch: TiltBatch, optics: Optics
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-particle subtomograms in the tomogram frame from their tilt images.

    Returns CTF-premultiplied data ``sum H^* X`` (B, D, D, D//2+1) complex and the
    weight ``sum |H|^2`` (same shape), the latter being each particle's 3D CTF / missing
    wedge. Real-space subtomograms: ``ft_to_volume(data / (weight + eps))``.
    """
    return _per_particle_sums(_tomogram_frame(batch, optics), optics.box)


def reconstruct_subtomograms(
    batch: TiltBatch, optics: Optics, min_weight: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """RELION 3.0-style subtomograms in the tomogram frame from their tilt images.

    The images, not CTF-multiplied, are gridded into 3D and divided by their sampling
    density (what a weighted back-projection does); the 3D CTF is the density-weighted
    mean of the tilts' CTFs (with exposure filter) at each voxel, so the data are
    ``CTF3D * V + noise`` there. Voxels with a density under ``min_weight`` (the missing
    wedge, the gaps between far tilts) are 0 in both. Returns the data
    (B, D, D, D//2+1) complex and the 3D CTF (same shape, real).
    """
    if optics.ctf_premultiplied or optics.dose_weighted:
        raise ValueError("reconstructed subtomograms need images that are neither "
                         "CTF-premultiplied nor dose-weighted")
    prep = _tomogram_frame(batch, optics)
    d = optics.box
    phase = shift_phase_2d(batch.shift_A / optics.pixel_size_A, d).expand(
        prep.transfer.shape).to(torch.complex64)
    ctf = (prep.transfer * phase.conj()).real.to(torch.complex64)  # H alone
    prep.transfer = phase  # inserts conj(S) X w, weight w
    sx, density = _per_particle_sums(prep, d)
    prep.data, prep.transfer = ctf, torch.ones_like(ctf)  # inserts H w
    sh, _ = _per_particle_sums(prep, d)
    ok = density > min_weight
    scale = 1.0 / density.clamp_min(1e-6)
    return (torch.where(ok, sx * scale, 0).to(torch.complex64),
            torch.where(ok, sh.real * scale, 0).float())
