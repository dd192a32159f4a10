"""Consensus map, noise power and amplitude envelope that anchor the VAE decoder.

The decoder predicts ``V(k; z) = V0(k) + env(|k|) f(k, z)``: ``V0`` is the consensus
(FSC-weighted Wiener back-projection of every kept image), ``env`` the radial amplitude
of ``V0``, so the network works with O(1) numbers at every resolution, and the loss
divides squared residuals by the noise power per 2D shell (a Gaussian likelihood).

CTF-premultiplied data ``X = M (H V + n)`` carry noise of power ``M^2 s2``: every sum here
weights a sample by ``cos(tilt) / M^2`` (:meth:`PointBatch.weight`), so the consensus is
``sum conj(MH) X / M^2 / sum |MH|^2 / M^2`` (CTF^2 weights, as for plain data, not CTF^4)
and the noise power is measured on ``|X - MH V0|^2 / M^2``.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet import parallel
from tomohet.methods.base import default_mask
from tomohet.methods.vae.data import SampleSource, all_tilts
from tomohet.physics.forward import NoiseModel
from tomohet.physics.fourier import radial_shell_index, volume_to_ft
from tomohet.physics.projection import Backprojector, VolumeProjector
from tomohet.physics.reconstruction import backproject_samples, gold_standard_maps

__all__ = ["consensus_volume", "noise_power", "radial_envelope", "iterate_all"]


def iterate_all(cache: SampleSource, batch: int, owned_only: bool = False):
    """Yield (rows (b,), PointBatch) over every particle with all its cached slots;
    ``owned_only``: only the blocks of ``batch`` rows that are this rank's
    (:func:`tomohet.parallel.owns`; all of them on one rank)."""
    n = cache.n_particles
    for block, s in enumerate(range(0, n, batch)):
        if owned_only and not parallel.owns(block):
            continue
        rows = torch.arange(s, min(n, s + batch))
        yield rows, cache.gather(rows, all_tilts(cache.visible[rows]))


def consensus_volume(cache: SampleSource, device: torch.device, halves: np.ndarray,
                     batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """FSC-weighted Wiener reconstruction from two half sets (tilt-weighted).

    cache on ``device``; halves (N,) 0/1 per cached particle, from
    :func:`tomohet.data.keys.half_sets` (the file's rlnRandomSubset, else keyed by name,
    never by row position). -> (volume (D, D, D) in a soft sphere, half-map FSC (D//2+1,)).
    Under ``torch.distributed`` each rank back-projects its blocks of ``batch`` particles
    and the grids are summed over ranks.
    """
    box = cache.box
    halves_t = torch.as_tensor(np.asarray(halves, dtype=np.int64), device=device)
    bp = Backprojector(box, 2, 2, device)
    dh = box // 2 + 1
    for rows, pb in iterate_all(cache, batch, owned_only=True):
        # weights cos(tilt) / M^2; kx = 0 samples have their Friedel mates in the input
        backproject_samples(bp, pb.freq, pb.data, pb.transfer, pb.weight(),
                            (pb.pix % dh) == 0, halves_t[rows.to(device)][pb.particle])
    parallel.all_reduce_sum([bp.data, bp.weight])  # each rank's blocks (no-op on one)
    gs = gold_standard_maps(bp)  # half maps -> FSC -> merged, FSC-Wiener-filtered map
    vol, curve = gs.maps[0], gs.fsc[0]
    mask = default_mask(box, device=vol.device)
    return (vol * mask).float(), curve.cpu()


def noise_power(cache: SampleSource, v0: VolumeProjector, device: torch.device,
                batch: int = 256) -> torch.Tensor:
    """``E|X - H V0|^2 / M^2`` per 2D shell -> (D//2 + 2,) (``M^2`` the premultiplication
    power of premultiplied data, else 1).

    Measured by the shared :class:`tomohet.physics.forward.NoiseModel` (one group: the
    loss's cos(tilt) weight already carries the tilt dependence), with each sample's
    Hermitian multiplicity as its weight, as the likelihood counts it; shells without
    samples are interpolated from their neighbours.
    """
    noise = NoiseModel(cache.box, 1, device)
    for _rows, pb in iterate_all(cache, batch, owned_only=True):
        r = pb.data - v0.sample(pb.freq)[0] * pb.transfer
        noise.accumulate_samples(r.real**2 + r.imag**2, pb.shell, pb.herm,
                                 premult_power=pb.premult_power)
    parallel.all_reduce_sum([noise._sum, noise._count])  # each rank's blocks
    if not noise.has_samples:
        return torch.ones(noise.n_shells)
    noise.update(floor=0.0, fill="interpolate")
    power = noise.shell_power().float().cpu()
    return power.clamp_min(float(power.max()) * 1e-6)


def radial_envelope(volume: torch.Tensor, floor: float = 0.02) -> torch.Tensor:
    """RMS Fourier amplitude of ``volume`` per 3D shell -> (D//2 + 2,), floored at
    ``floor`` x its maximum past the origin so that no shell is switched off."""
    box = volume.shape[-1]
    ft = volume_to_ft(volume.float())
    shell = radial_shell_index(box, 3, device=volume.device).clamp_max(box // 2 + 1)
    n_sh = box // 2 + 2
    p = torch.zeros(n_sh, device=volume.device).index_add_(
        0, shell.reshape(-1), (ft.abs() ** 2).reshape(-1))
    c = torch.zeros(n_sh, device=volume.device).index_add_(
        0, shell.reshape(-1), torch.ones(shell.numel(), device=volume.device))
    env = torch.sqrt(p / c.clamp_min(1)).cpu()
    ref = float(env[1:].max()) if n_sh > 1 else float(env.max())
    return env.clamp_min(max(ref * floor, 1e-12))
