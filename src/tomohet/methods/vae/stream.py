"""The VAE's masked Fourier samples computed batch by batch from the particle images.

:class:`StreamedSamples` answers what :class:`~tomohet.methods.vae.data.FourierCache`
answers (``gather(rows, slots)``, ``visible``, ``restrict``) without keeping any sample:
each call reads the requested tilt images only (from the memory-mapped particle stacks),
transforms them and keeps the samples inside each image's dose mask, resolution limit
and shell limit -- the same samples, in the same order, as the cache would hand out, so
training, the consensus and the encoding are the same up to float rounding. What it holds
per particle is the (N, T) bool of cached tilt slots and the row index: memory does not
grow with the number of particles (the cache held ~24 bytes per masked sample, ~0.5 MB
per particle at box 32 and 41 tilts), and under ``torch.distributed`` each rank reads
only the images of the particles it trains on.

The price is the transform of each batch's images at every pass (the cache transformed
each image once): at box 32 that is a few per cent of an epoch, which the decoder
dominates (``benchmarks/README.md``, "Distributed (issue 17)").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from tomohet.data.particles import TiltBatch, TiltSeriesParticles
from tomohet.data.prepare import prepare_batch
from tomohet.methods.vae.data import PointBatch, point_batch, shell_of_pixel
from tomohet.physics.ctf import tilt_weight

__all__ = ["StreamedSamples", "stream_samples"]


def _f32(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32).to(device)


@dataclass(frozen=True)
class StreamedSamples:
    """Masked Fourier samples of particles ``index`` of ``particles`` at their cached
    tilt slots ``visible`` (N, T) bool, made on demand (see the module docstring).

    Transforms run on ``device``; ``max_shell``: samples past that 2D radius (Fourier
    pixels) are left out (:meth:`restrict`).
    """

    particles: TiltSeriesParticles
    index: np.ndarray  # (N,) rows of ``particles``
    visible: torch.Tensor  # (N, T) bool, CPU: the slots this source hands out
    max_resolution_A: float | None = None
    device: torch.device = torch.device("cpu")
    max_shell: float | None = None

    @property
    def n_particles(self) -> int:
        return len(self.index)

    @property
    def box(self) -> int:
        return int(self.particles.optics.box)

    @property
    def nbytes(self) -> int:
        """Bytes of per-particle state held (the slot mask and the row index)."""
        return int(self.visible.numel() * self.visible.element_size() + self.index.nbytes)

    def to(self, device: torch.device | str) -> StreamedSamples:
        return replace(self, device=torch.device(device))

    def restrict(self, max_shell: float) -> StreamedSamples:
        """The same samples without those past 2D radius ``max_shell`` (Fourier pixels)."""
        limit = max_shell if self.max_shell is None else min(self.max_shell, max_shell)
        return replace(self, max_shell=float(limit))

    def gather(self, rows: torch.Tensor, slots: torch.Tensor) -> PointBatch:
        """Samples of particles ``rows`` (B,) at tilt slots ``slots`` (B, S), -1 = none."""
        r = rows.cpu().numpy().astype(np.int64)
        sl = slots.cpu().numpy().astype(np.int64)
        b, s = sl.shape
        t = np.clip(sl, 0, None)
        ok = (sl >= 0) & self.visible.numpy()[r[:, None], t]
        batch = _slot_batch(self.particles, self.index[r], t, ok, self.device)
        prep = prepare_batch(batch, self.particles.optics, self.max_resolution_A)
        mask = prep.mask  # (B, S, D, Dh)
        d, dh = mask.shape[-2:]
        if self.max_shell is not None:
            inside = shell_of_pixel(self.box, self.device).reshape(d, dh) <= self.max_shell
            mask = mask & inside
        # flat positions in (b, s, y, x) order: the cache's order within each image
        flat = mask.reshape(-1).nonzero()[:, 0]
        per_image = d * dh
        image, pix = torch.div(flat, per_image, rounding_mode="floor"), flat % per_image
        opt = self.particles.optics
        premult = opt.ctf_premultiplied or opt.dose_weighted
        return point_batch(self.box, image, pix,
                           prep.data.reshape(-1)[flat].to(torch.complex64),
                           prep.transfer.reshape(-1)[flat].to(torch.complex64),
                           batch.rotation.reshape(b * s, 3, 3),
                           tilt_weight(batch.tilt_deg).reshape(-1), b, s,
                           prep.premult_power.reshape(-1)[flat].float() if premult else None)

def _slot_batch(p: TiltSeriesParticles, kept: np.ndarray, t: np.ndarray, ok: np.ndarray,
                device: torch.device) -> TiltBatch:
    """A (B, S) tilt batch of particles ``kept`` (B,) at tilt slots ``t`` (B, S); images
    read only where ``ok`` (zeros, and not visible, elsewhere)."""
    k2 = kept[:, None]
    b, s = t.shape
    img = np.where(ok, p.image_index[k2, t], -1)
    box = p.optics.box
    images = p.images.read(img.reshape(-1)).reshape(b, s, box, box)
    rot = np.einsum("ntij,njk->ntik", p.tilt_rotation[k2, t], p.rotation[kept])
    return TiltBatch(
        index=kept, images=images.to(device), rotation=_f32(rot, device),
        defocus_u_A=_f32(p.defocus_u_A[k2, t], device),
        defocus_v_A=_f32(p.defocus_v_A[k2, t], device),
        defocus_angle_deg=_f32(p.defocus_angle_deg[k2, t], device),
        dose_e_per_A2=_f32(p.dose_e_per_A2[k2, t], device),
        tilt_deg=_f32(p.tilt_deg[k2, t], device), ctf_scale=_f32(p.ctf_scale[k2, t], device),
        shift_A=_f32(p.shift_A[k2, t], device),
        visible=torch.as_tensor(ok & p.visible[k2, t]).to(device),
        particle_rotation=_f32(p.rotation[kept], device))


def stream_samples(particles: TiltSeriesParticles, index: np.ndarray, visible: np.ndarray,
                   max_resolution_A: float | None = None,
                   device: torch.device | str = "cpu") -> StreamedSamples:
    """Samples of particles ``index`` at their slots ``visible`` (len(index), T) bool,
    made batch by batch on ``device`` (the streaming counterpart of
    :func:`~tomohet.methods.vae.data.build_cache`)."""
    idx = np.asarray(index, dtype=np.int64)
    vis = np.asarray(visible, dtype=bool)
    if vis.shape != (len(idx), particles.n_tilts):
        raise ValueError(f"visible has shape {vis.shape}, expected ({len(idx)}, "
                         f"{particles.n_tilts})")
    return StreamedSamples(particles, idx, torch.as_tensor(vis), max_resolution_A,
                           torch.device(device))
