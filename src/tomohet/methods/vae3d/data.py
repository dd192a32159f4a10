"""Subtomograms and their 3D weights for the 3D VAE, in the reference frame.

Every particle becomes ``Y_n = sum H^* X`` and ``W_n = sum |H|^2`` on the working box's
rfft grid (:func:`tomohet.methods.linear.reference.iter_reference`, the path ``flow`` and
``nma`` use): tilt images are back-projected on the fly with their full pose, CTF and dose
filter (as ``ml3d`` does); RELION 3.1/4 and STOPGAP subtomograms are scattered through
their rotation with their own 3D CTF/wedge weight. Samples of a subtomogram whose weight
is below 1e-3 (its missing wedge) never enter ``Y`` or ``W``
(:func:`tomohet.data.prepare.prepare_subtomo_batch`), so nothing downstream -- the
encoder input or the loss -- can depend on them. ``Y_n ~ W_n V_n`` for the particle's
structure ``V_n``.

The working box ``small`` (:func:`~tomohet.methods.linear.reference.working_box`) holds
the band up to ``max_resolution_A``; ``Y`` is Fourier-cropped (which rescales a
transform by ``(small/box)^3``) and ``W`` is cropped without that factor, so that
``Y_small = W_small V_small`` still holds for the cropped structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tomohet.methods.base import ParticleSet
from tomohet.methods.linear.reference import (
    crop_rfft,
    iter_reference,
    subsample_rfft,
    working_box,
)
from tomohet.physics.fourier import ft_to_volume, hermitian_weights_3d, radial_shell_index

__all__ = ["SubtomoData", "build_data", "weight_volume", "loss_mask", "WEIGHT_FLOOR"]

# a weight below this fraction of the median positive weight is treated as missing
WEIGHT_FLOOR = 1e-4


@dataclass
class SubtomoData:
    """Reference-frame data of N particles on the working box ``small`` (CPU tensors)."""

    y: torch.Tensor  # complex64 (N, s, s, s//2+1): sum H^* X
    w: torch.Tensor  # float32 (N, s, s, s//2+1): sum |H|^2 (wedge x CTF^2 x dose)
    box: int  # the particles' box
    small: int  # the working box
    pixel_size_A: float  # of the particles' box

    @property
    def n_particles(self) -> int:
        return int(self.y.shape[0])

    @property
    def working_pixel_A(self) -> float:
        return self.pixel_size_A * self.box / self.small


def build_data(particles: ParticleSet, max_resolution_A: float | None, batch_size: int,
               device: torch.device | str = "cpu", progress=None) -> SubtomoData:
    """(Y, W) of every particle on the working box; per particle, independent of the
    others (so of row order and batch size)."""
    o = particles.optics
    small = working_box(o.box, o.pixel_size_A, max_resolution_A)
    n, h = particles.n_particles, small // 2 + 1
    y = torch.zeros((n, small, small, h), dtype=torch.complex64)
    w = torch.zeros((n, small, small, h), dtype=torch.float32)
    for idx, yb, wb in iter_reference(particles, batch_size, device):
        ys = crop_rfft(subsample_rfft(yb), o.box, small)
        ws = crop_rfft(subsample_rfft(wb), o.box, small) / (small / o.box) ** 3
        t = torch.as_tensor(idx)
        y[t] = ys.to(torch.complex64).cpu()
        w[t] = ws.real.float().clamp_min(0).cpu() if ws.is_complex() else \
            ws.float().clamp_min(0).cpu()
        if progress is not None:
            progress(len(idx))
    return SubtomoData(y=y, w=w, box=o.box, small=small, pixel_size_A=float(o.pixel_size_A))


def loss_mask(w: torch.Tensor, floor: float) -> torch.Tensor:
    """Samples the loss sees: weight above ``floor`` and inside the Nyquist sphere of the
    working box. w (..., s, s, s//2+1) -> bool of the same shape."""
    s = w.shape[-3]
    inside = radial_shell_index(s, 3, device=w.device) < s // 2
    return (w > floor) & inside


def weight_floor(w: torch.Tensor) -> float:
    """:data:`WEIGHT_FLOOR` times the median positive weight of the set."""
    pos = w[w > 0]
    return float(WEIGHT_FLOOR * (pos.median() if pos.numel() else torch.tensor(1.0)))


def weight_volume(w: torch.Tensor) -> torch.Tensor:
    """rfft-layout weights (..., s, s, s//2+1) -> the full, centred Fourier volume
    (..., s, s, s) (Friedel mates filled by ``W(-q) = W(q)``), the encoder's second
    channel."""
    s = w.shape[-3]
    h = w.shape[-1]
    full = torch.zeros((*w.shape[:-1], s), dtype=w.dtype, device=w.device)
    full[..., :h] = w
    rest = torch.arange(h, s, device=w.device)  # x index k > s/2: the mate at -k
    neg = (-torch.arange(s, device=w.device)) % s
    mate = w.index_select(-3, neg).index_select(-2, neg).index_select(-1, s - rest)
    full[..., h:] = mate
    return torch.fft.fftshift(full, dim=(-3, -2, -1))


def consensus_and_noise(data: SubtomoData, floor: float, reg: float = 1e-3
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Consensus ``mu = sum Y / (sum W + reg mean W)`` (rfft, working box) and the noise
    power per shell ``s2(k) = < |Y - W mu|^2 / W >`` over the samples the loss sees
    (shells without any get the mean of the others)."""
    sy = data.y.sum(0)
    sw = data.w.sum(0)
    scale = sw[sw > 0].mean() if bool((sw > 0).any()) else torch.tensor(1.0)
    mu = sy / (sw + reg * scale)
    s = data.small
    shell = radial_shell_index(s, 3)
    herm = hermitian_weights_3d(s)
    n_sh = s // 2 + 1
    num = torch.zeros(n_sh, dtype=torch.float64)
    den = torch.zeros(n_sh, dtype=torch.float64)
    for start in range(0, data.n_particles, 64):
        y, w = data.y[start : start + 64], data.w[start : start + 64]
        m = loss_mask(w, floor)
        r = (y - w * mu).abs() ** 2 / w.clamp_min(floor)
        val = (r * m * herm).double()
        cnt = (m * herm).double()
        sh = shell.clamp_max(n_sh - 1).expand_as(val)
        num.index_add_(0, sh.reshape(-1), val.reshape(-1))
        den.index_add_(0, sh.reshape(-1), cnt.reshape(-1))
    ok = den > 0
    s2 = torch.where(ok, num / den.clamp_min(1), torch.zeros_like(num))
    fill = s2[ok & (s2 > 0)].mean() if bool((ok & (s2 > 0)).any()) else torch.tensor(1.0)
    s2 = torch.where(s2 > 0, s2, fill)
    return mu, s2.float()


def encoder_scales(data: SubtomoData, mu: torch.Tensor, filt: torch.Tensor
                   ) -> tuple[float, float]:
    """RMS of the (filtered) residual volumes ``ift(filt (Y - W mu))`` and mean weight
    over the set: the encoder divides its two channels by them."""
    ss, n = 0.0, 0
    for start in range(0, data.n_particles, 64):
        y, w = data.y[start : start + 64], data.w[start : start + 64]
        r = ft_to_volume((y - w * mu) * filt, data.small)
        ss += float((r.double() ** 2).sum())
        n += r.numel()
    rms = float(np.sqrt(ss / max(n, 1))) or 1.0
    wm = float(data.w.mean()) or 1.0
    return rms, wm
