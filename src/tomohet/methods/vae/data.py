"""Masked Fourier samples of tilt images, gathered in flat (ragged) batches for the VAE.

A particle's tilt images are transformed (:func:`prepare_batch`) and only the frequencies
inside each image's dose mask (and resolution limit) are kept: the observed value ``X``,
the transfer ``H`` (CTF x exposure x shift phase) and the rfft pixel index. For
CTF-premultiplied (or dose-weighted) stacks, ``X = M (H V + n)`` with ``M`` the CTF
(x exposure): the transfer then includes ``M`` and each sample also keeps the noise scale
``M^2`` (:class:`tomohet.physics.forward.PreparedBatch`), so residuals are weighted by
``1 / M^2`` (their noise power is ``M^2`` times the shell's) -- the same likelihood as the
EM engine's. A training batch of ``B`` particles with ``S`` chosen tilt slots each is a
flat list of ``M`` samples (:class:`PointBatch`), so the decoder runs on exactly the
samples that carry signal, in one call, with no loop over images.

The VAE makes those batches from the images on demand
(:class:`tomohet.methods.vae.stream.StreamedSamples`: memory flat in the number of
particles). :class:`FourierCache` (:func:`build_cache`) holds every sample in memory (~24
bytes each, ~0.3-0.5 MB per particle at box 32 and 41 tilts) and hands out the same
batches; it is kept for tests and small sets.

The 3D frequency of a sample is ``R.T [kx, ky, 0]`` with ``R`` the image's full rotation
(:func:`tomohet.physics.projection._slice_coordinates`), in cycles/pixel (x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from tomohet.data.particles import TiltSeriesParticles
from tomohet.data.prepare import prepare_batch
from tomohet.physics.ctf import tilt_weight
from tomohet.physics.fourier import freq_grid_2d, hermitian_weights_2d

__all__ = ["FourierCache", "PointBatch", "SampleSource", "build_cache", "point_batch",
           "shell_of_pixel", "select_lowest_dose", "sample_tilts", "all_tilts"]


@dataclass
class PointBatch:
    """Flat Fourier samples of B particles x S tilt slots (M samples in all).

    image (M,) long: image slot ``b * S + s`` of each sample; particle (M,) long: ``b``;
    freq (M, 3) cycles/pixel (x, y, z) in the reference frame; shell (M,) long: 2D radius
    ``round(|k| D)``; pix (M,) rfft pixel index; data, transfer (M,) complex64; tilt_w (M,)
    cos(tilt) of the sample's image; herm (M,) Hermitian multiplicity (1 on the kx = 0
    and Nyquist columns, else 2); rotation (B * S, 3, 3); n_particles B; n_slots S;
    premult_power (M,) ``M^2`` of premultiplied data, None when the data are not.
    """

    image: torch.Tensor
    particle: torch.Tensor
    freq: torch.Tensor
    shell: torch.Tensor
    pix: torch.Tensor
    data: torch.Tensor
    transfer: torch.Tensor
    tilt_w: torch.Tensor
    herm: torch.Tensor
    rotation: torch.Tensor
    n_particles: int
    n_slots: int
    premult_power: torch.Tensor | None = None

    def weight(self) -> torch.Tensor:
        """(M,) weight of each sample's squared residual: ``cos(tilt) / M^2``."""
        if self.premult_power is None:
            return self.tilt_w
        return self.tilt_w / self.premult_power.clamp_min(1e-6)


class SampleSource(Protocol):
    """What training and the reference passes read: the masked samples of particles at
    tilt slots (:class:`FourierCache`, held in memory, or
    :class:`tomohet.methods.vae.stream.StreamedSamples`, made from the images on demand)."""

    @property
    def visible(self) -> torch.Tensor: ...  # (N, T) bool: the slots handed out

    @property
    def n_particles(self) -> int: ...

    @property
    def box(self) -> int: ...

    def gather(self, rows: torch.Tensor, slots: torch.Tensor) -> PointBatch: ...

    def restrict(self, max_shell: float) -> SampleSource: ...


@dataclass
class FourierCache:
    """Masked samples of every image of the kept particles, stored flat.

    pix (P,) int32 rfft pixel index ``y * Dh + x``; data, transfer (P,) complex64;
    start, count (N, T) int64: where image (n, t) lies in the flat arrays (count 0 for
    images that are not visible); rotation (N, T, 3, 3); tilt_w (N, T) cos(tilt);
    dose (N, T) e/A^2; visible (N, T) bool; premult_power (P,) float32 ``M^2`` of
    premultiplied data, or None (all ones). ``N`` counts kept particles only.
    """

    pix: torch.Tensor
    data: torch.Tensor
    transfer: torch.Tensor
    start: torch.Tensor
    count: torch.Tensor
    rotation: torch.Tensor
    tilt_w: torch.Tensor
    dose: torch.Tensor
    visible: torch.Tensor
    box: int
    premult_power: torch.Tensor | None = None

    @property
    def n_particles(self) -> int:
        return int(self.start.shape[0])

    @property
    def nbytes(self) -> int:
        arrays = (self.pix, self.data, self.transfer, self.premult_power)
        return sum(t.numel() * t.element_size() for t in arrays if t is not None)

    def to(self, device: torch.device | str) -> FourierCache:
        fields: dict[str, Any] = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                                  for k, v in self.__dict__.items()}
        return FourierCache(**fields)

    def restrict(self, max_shell: float) -> FourierCache:
        """The same cache without samples past 2D radius ``max_shell`` (Fourier pixels)."""
        keep = shell_of_pixel(self.box, self.pix.device)[self.pix.long()] <= max_shell
        image = torch.repeat_interleave(torch.arange(self.count.numel(), device=keep.device),
                                        self.count.reshape(-1).to(keep.device))
        count = torch.zeros(self.count.numel(), dtype=torch.long, device=keep.device)
        count.index_add_(0, image[keep], torch.ones_like(image[keep]))
        count = count.reshape(self.count.shape).to(self.count.device)
        flat = count.reshape(-1)
        start = (torch.cumsum(flat, 0) - flat).reshape(count.shape)
        fields: dict[str, Any] = dict(self.__dict__, pix=self.pix[keep], data=self.data[keep],
                      transfer=self.transfer[keep], start=start, count=count)
        if self.premult_power is not None:
            fields["premult_power"] = self.premult_power[keep]
        return FourierCache(**fields)

    def gather(self, rows: torch.Tensor, slots: torch.Tensor) -> PointBatch:
        """Samples of particles ``rows`` (B,) at tilt slots ``slots`` (B, S), -1 = none."""
        dev = self.pix.device
        rows, slots = rows.to(dev), slots.to(dev)
        b, s = slots.shape
        ok = slots >= 0
        t = slots.clamp_min(0)
        r2 = rows[:, None].expand(b, s)
        st = self.start[r2, t].reshape(-1)
        ct = torch.where(ok, self.count[r2, t], 0).reshape(-1)
        total = int(ct.sum())
        image = torch.repeat_interleave(torch.arange(b * s, device=dev), ct,
                                        output_size=total)
        first = torch.cumsum(ct, 0) - ct
        idx = st[image] + torch.arange(total, device=dev) - first[image]
        pix = self.pix[idx].long()
        rot = self.rotation[r2, t].reshape(b * s, 3, 3)
        tw = self.tilt_w[r2, t].reshape(-1)
        return point_batch(self.box, image, pix, self.data[idx], self.transfer[idx], rot, tw,
                           b, s, None if self.premult_power is None
                           else self.premult_power[idx])


def point_batch(box: int, image: torch.Tensor, pix: torch.Tensor, data: torch.Tensor,
                transfer: torch.Tensor, rotation: torch.Tensor, tilt_w: torch.Tensor,
                b: int, s: int, premult_power: torch.Tensor | None) -> PointBatch:
    """A :class:`PointBatch` from each sample's image slot (M,), rfft pixel (M,), value
    and transfer (M,), the slots' rotations (B * S, 3, 3) and cos(tilt) (B * S,): the
    3D frequency, shell and Hermitian multiplicity of every sample are derived here."""
    dev = pix.device
    k2 = _grid(box, dev)
    kx, ky = k2[pix, 0], k2[pix, 1]
    freq = kx[:, None] * rotation[image, 0] + ky[:, None] * rotation[image, 1]
    herm = hermitian_weights_2d(box, device=dev).reshape(-1)[pix]
    shell = torch.round(torch.sqrt(kx**2 + ky**2) * box).long()
    return PointBatch(image=image, particle=torch.div(image, s, rounding_mode="floor"),
                      freq=freq, shell=shell, pix=pix, data=data, transfer=transfer,
                      tilt_w=tilt_w[image], herm=herm, rotation=rotation,
                      n_particles=b, n_slots=s, premult_power=premult_power)


_GRIDS: dict[tuple[int, str], torch.Tensor] = {}


def _grid(box: int, device: torch.device) -> torch.Tensor:
    """(D * Dh, 2) rfft frequencies (kx, ky), cached per box and device."""
    key = (box, str(device))
    if key not in _GRIDS:
        _GRIDS[key] = freq_grid_2d(box, device=device).reshape(-1, 2)
    return _GRIDS[key]


def shell_of_pixel(box: int, device: torch.device | str) -> torch.Tensor:
    """(D * Dh,) 2D shell ``round(|k| D)`` of each rfft pixel (what :meth:`restrict`
    compares with its limit)."""
    return torch.round(_grid(box, torch.device(device)).norm(dim=-1) * box)


def build_cache(particles: TiltSeriesParticles, index: np.ndarray, visible: np.ndarray,
                max_resolution_A: float | None = None, batch_size: int = 64,
                device: torch.device | str = "cpu", progress=None) -> FourierCache:
    """Transform the images of particles ``index`` once and keep their masked samples.

    visible (len(index), T) bool: the tilt slots to keep (e.g. the lowest-dose ones).
    Transforms run on ``device``; the cache is returned on the CPU.
    """
    box = particles.optics.box
    n, t = visible.shape
    pix, data, transfer, counts, scale = [], [], [], [], []
    premultiplied = particles.optics.ctf_premultiplied or particles.optics.dose_weighted
    sub = particles.with_visible(_full_visible(particles, index, visible))
    for start in range(0, n, batch_size):
        rows = index[start : start + batch_size]
        prep = prepare_batch(sub.batch(rows, device), particles.optics, max_resolution_A)
        mask = prep.mask  # (B, T, D, Dh)
        counts.append(mask.flatten(2).sum(-1).cpu())
        nz = mask.nonzero()  # ordered (b, t, y, x): matches counts' cumulative offsets
        pix.append((nz[:, 2] * (box // 2 + 1) + nz[:, 3]).to(torch.int32).cpu())
        data.append(prep.data[mask].to(torch.complex64).cpu())
        transfer.append(prep.transfer[mask].to(torch.complex64).cpu())
        if premultiplied:
            scale.append(prep.premult_power[mask].float().cpu())
        if progress is not None:
            progress(len(rows))
    count = torch.cat(counts).long()
    start_idx = (torch.cumsum(count.reshape(-1), 0) - count.reshape(-1)).reshape(n, t)
    rot = torch.as_tensor(particles.full_rotation()[index], dtype=torch.float32)
    tilt = torch.as_tensor(particles.tilt_deg[index], dtype=torch.float32)
    return FourierCache(
        pix=torch.cat(pix), data=torch.cat(data), transfer=torch.cat(transfer),
        start=start_idx, count=count, rotation=rot, tilt_w=tilt_weight(tilt),
        dose=torch.as_tensor(particles.dose_e_per_A2[index], dtype=torch.float32),
        visible=torch.as_tensor(visible), box=box,
        premult_power=torch.cat(scale) if premultiplied else None)


def _full_visible(particles: TiltSeriesParticles, index: np.ndarray,
                  visible: np.ndarray) -> np.ndarray:
    """(N_all, T) visibility with rows ``index`` replaced by ``visible``."""
    vis = np.zeros_like(particles.visible)
    vis[index] = visible
    return vis & particles.visible


def select_lowest_dose(particles: TiltSeriesParticles, n_tilts: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """cryoDRGN-ET selection: each particle's ``n_tilts`` lowest-dose visible images.

    -> (kept particle indices (K,), visibility (K, T) of the chosen slots). Particles with
    fewer visible images are left out.
    """
    vis = particles.visible
    dose = np.where(vis, particles.dose_e_per_A2, np.inf)
    order = np.argsort(dose, axis=1, kind="stable")[:, :n_tilts]
    chosen = np.zeros_like(vis)
    np.put_along_axis(chosen, order, True, axis=1)
    chosen &= vis
    kept = np.nonzero(chosen.sum(1) >= n_tilts)[0]
    return kept, chosen[kept]


def sample_tilts(visible: torch.Tensor, n_tilts: int,
                 scores: torch.Generator | torch.Tensor) -> torch.Tensor:
    """tomoDRGN sampling: ``n_tilts`` random visible slots per row, -1 where fewer.

    visible (B, T) bool -> (B, min(n_tilts, T)) long: the visible slots with the highest
    ``scores`` (B, T) uniforms (per-particle keyed draws,
    :func:`tomohet.methods.vae.train.epoch_draws`), or drawn from a CPU generator.
    """
    b, t = visible.shape
    s = min(n_tilts, t)
    score = (torch.rand((b, t), generator=scores) if isinstance(scores, torch.Generator)
             else scores.float().cpu())
    score = torch.where(visible.cpu(), score, torch.full_like(score, -1.0))
    top, slots = torch.topk(score, s, dim=1)
    return torch.where(top >= 0, slots, torch.full_like(slots, -1))


def all_tilts(visible: torch.Tensor) -> torch.Tensor:
    """Every visible slot of each row (B, T) -> (B, T) long, -1 where not visible."""
    t = visible.shape[1]
    slots = torch.arange(t).expand(visible.shape[0], t)
    return torch.where(visible.cpu(), slots, torch.full_like(slots, -1))
