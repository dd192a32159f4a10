"""Encoders of the tilt-series VAE: the particle's tilt images -> posterior (mean, log-variance).

Both see the residual ``r = X - H V0`` of each sample, so they look at what the consensus
does not explain:

* ``backproject`` (default): each tilt image's ``conj(H) r`` is inserted into a low-
  resolution 3D Fourier lattice at its pose (nearest voxel, half space); the particle's
  visible tilts are pooled by a Wiener-weighted mean ``sum conj(H) r w / (sum |H|^2 w +
  lambda)`` and an MLP maps the pooled lattice to (mean, log-variance). Pose-aware and
  indifferent to how many tilts a particle has. With a focus mask
  (:mod:`~tomohet.methods.vae.focus`) the pooled lattice is the masked map's: the
  encoder sees only the residual inside the region that varies.
* ``tilt``: tomoDRGN / cryoDRGN-ET style -- an MLP per tilt image (its low-frequency
  ``conj(H) r`` and its rotation) gives an embedding; embeddings are pooled over the
  visible tilts by a masked mean or attention weights, then a second MLP gives the
  posterior.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn

from tomohet.methods.vae.data import PointBatch
from tomohet.methods.vae.focus import apply_focus, focus_grid_size, focus_kernel
from tomohet.methods.vae.layers import half_space_flip, mlp
from tomohet.methods.vae.moments import StreamedMoments, inverse_std_scale
from tomohet.physics.fourier import freq_grid_2d

__all__ = ["BackprojectEncoder", "TiltEncoder"]

# calibrate(): a pass over this rank's batches (a fresh iterable per call), and the
# residual the encoder sees for a batch
Batches = Callable[[], Iterable[PointBatch]]
Residual = Callable[[PointBatch], torch.Tensor]


class BackprojectEncoder(nn.Module):
    """Wiener-pooled low-resolution back-projection of the residuals -> posterior."""

    lookup: torch.Tensor
    scale: torch.Tensor
    lam: torch.Tensor
    points: torch.Tensor
    focus: torch.Tensor

    def __init__(self, box: int, zdim: int, radius: int, hidden: int = 256,
                 layers: int = 2, focus: bool = False) -> None:
        super().__init__()
        self.box, self.radius = box, int(radius)
        r = self.radius
        # no sample past this 2D shell reaches the lattice: |round(k D)| <= r means
        # |k| D <= r + sqrt(3) / 2, so round(|k| D) <= r + 1
        self.max_shell = float(r + 1)
        c = torch.arange(-r, r + 1)
        gz, gy, gx = torch.meshgrid(c, c, c, indexing="ij")
        pts = torch.stack([gx, gy, gz], -1).reshape(-1, 3)
        keep = (pts.float().norm(dim=-1) <= r) & ~half_space_flip(pts.float())
        lookup = torch.full((len(pts),), -1, dtype=torch.long)
        lookup[keep] = torch.arange(int(keep.sum()))
        self.n_vox = int(keep.sum())
        self.register_buffer("lookup", lookup, persistent=False)
        self.register_buffer("points", pts[keep], persistent=False)  # (G, 3) x, y, z
        # the focus mask on the small grid of focus.apply_focus ((0,) without a focus)
        n_f = focus_grid_size(r, box)
        self.register_buffer("focus", torch.ones((n_f,) * 3) if focus else torch.zeros(0),
                             persistent=focus)  # old checkpoints carry none
        self.register_buffer("scale", torch.ones(2 * self.n_vox))
        self.register_buffer("lam", torch.tensor(1.0))
        self.mlp = mlp(2 * self.n_vox, hidden, layers, 2 * zdim)

    @property
    def has_focus(self) -> bool:
        return self.focus.numel() > 0

    def set_focus(self, mask: torch.Tensor) -> None:
        """The real-space focus mask (D, D, D) in [0, 1] (built with ``focus=True``)."""
        if not self.has_focus:
            raise ValueError("encoder built without a focus (focus=True)")
        if tuple(mask.shape) != (self.box,) * 3:
            raise ValueError(f"focus mask shape {tuple(mask.shape)} does not match box "
                             f"{self.box}")
        self.focus.copy_(focus_kernel(mask.detach().cpu(), self.radius).to(self.focus.device))

    def _slots(self, pb: PointBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(samples inside the lattice (M,) bool, their Friedel flip (M',) bool, their
        flat target ``b * G + voxel`` (M',))."""
        r = self.radius
        idx = torch.round(pb.freq * self.box).long()
        flip = half_space_flip(idx.float())
        idx = torch.where(flip[:, None], -idx, idx)
        inside = (idx.abs() <= r).all(-1)
        flat = ((idx[:, 2] + r) * (2 * r + 1) + (idx[:, 1] + r)) * (2 * r + 1) + idx[:, 0] + r
        slot = torch.where(inside, self.lookup[flat.clamp(0, len(self.lookup) - 1)], -1)
        ok = slot >= 0
        return ok, flip[ok], pb.particle[ok] * self.n_vox + slot[ok]

    def pooled_weight(self, pb: PointBatch) -> torch.Tensor:
        """den (B, G): sums of ``|H|^2 w`` (no residual needed)."""
        ok, _flip, tgt = self._slots(pb)
        h, w = pb.transfer[ok], pb.weight()[ok]
        den = torch.zeros(pb.n_particles * self.n_vox, device=h.device)
        den.index_add_(0, tgt, ((h.real**2 + h.imag**2) * w).float())
        return den.reshape(pb.n_particles, self.n_vox)

    def pooled(self, pb: PointBatch, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(num (B, G, 2), den (B, G)) sums of ``conj(H) r w`` and ``|H|^2 w``."""
        ok, flip, tgt = self._slots(pb)
        h, w = pb.transfer[ok], pb.weight()[ok]  # cos(tilt) / M^2 (premultiplied)
        v = h.conj() * resid[ok] * w
        v = torch.where(flip, v.conj(), v)
        b = pb.n_particles
        num = torch.zeros((b * self.n_vox, 2), device=v.device)
        num.index_add_(0, tgt, torch.stack([v.real, v.imag], -1).float())
        den = torch.zeros(b * self.n_vox, device=v.device)
        den.index_add_(0, tgt, ((h.real**2 + h.imag**2) * w).float())
        return num.reshape(b, self.n_vox, 2), den.reshape(b, self.n_vox)

    def inputs(self, pb: PointBatch, resid: torch.Tensor) -> torch.Tensor:
        """Unscaled network inputs (B, 2G): the pooled lattice, real then imaginary."""
        num, den = self.pooled(pb, resid)
        val = num / (den + self.lam)[..., None]
        if self.has_focus:
            val = apply_focus(val, self.points, self.focus)
        return torch.cat([val[..., 0], val[..., 1]], dim=-1)

    def calibrate(self, batches: Batches, residual: Residual) -> None:
        """Set ``lam`` (0.1 x mean non-zero pooled weight) and the per-input scales (1 /
        std of the pooled lattice) in two streamed passes: ``batches()`` yields this
        rank's PointBatches (called twice), ``residual(pb)`` the encoder's residual.

        Under ``torch.distributed`` every rank calls it with its own particles: the
        float64 moments are summed over ranks, so every rank gets the ``lam`` and scales
        of one rank on all of them (:mod:`tomohet.methods.vae.moments`).
        """
        weights = StreamedMoments(1, self.lam.device)
        for pb in batches():  # pass 1: lam, from the weights alone
            den = self.pooled_weight(pb)
            weights.add(den[den > 0].reshape(-1, 1))
        lam = 0.1 * float(weights.reduce().mean()[0]) if weights.n else 1.0
        self.lam.fill_(max(lam, 1e-12))
        inputs = StreamedMoments(2 * self.n_vox, self.lam.device)
        for pb in batches():  # pass 2: the inputs' moments at that lam
            inputs.add(self.inputs(pb, residual(pb)))
        self.scale.copy_(inverse_std_scale(inputs.reduce()))

    def forward(self, pb: PointBatch, resid: torch.Tensor) -> torch.Tensor:
        """-> (B, 2 Z) posterior mean and log-variance, concatenated."""
        return self.mlp(self.inputs(pb, resid) * self.scale)


class TiltEncoder(nn.Module):
    """Per-tilt MLP on low-frequency residuals and pose, pooled over visible tilts."""

    lookup: torch.Tensor
    scale: torch.Tensor

    def __init__(self, box: int, zdim: int, radius: int, hidden: int = 256, layers: int = 2,
                 t_emb: int = 64, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in ("mean", "attention"):
            raise ValueError(f"unknown pooling {pooling!r} (mean, attention)")
        self.box, self.pooling = box, pooling
        k = freq_grid_2d(box).reshape(-1, 2).norm(dim=-1) * box
        keep = k <= radius
        self.max_shell = float(radius) + 1.0  # round(|k| D) of every input <= this
        lookup = torch.full((len(k),), -1, dtype=torch.long)
        lookup[keep] = torch.arange(int(keep.sum()))
        self.n_pix = int(keep.sum())
        self.register_buffer("lookup", lookup, persistent=False)
        self.register_buffer("scale", torch.ones(2 * self.n_pix))
        self.per_tilt = mlp(2 * self.n_pix + 9, hidden, layers, t_emb)
        self.attention = nn.Linear(t_emb, 1) if pooling == "attention" else None
        self.head = mlp(t_emb, hidden, 1, 2 * zdim)

    def inputs(self, pb: PointBatch, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (per-image inputs (B*S, 2P), visible (B*S,) bool)."""
        slot = self.lookup[pb.pix]
        ok = slot >= 0
        v = pb.transfer[ok].conj() * resid[ok]
        if pb.premult_power is not None:  # premultiplied: conj(MH) M r' / M^2 = conj(H) r'
            v = v / pb.premult_power[ok].clamp_min(1e-6)
        n_img = pb.n_particles * pb.n_slots
        x = torch.zeros((n_img * self.n_pix, 2), device=v.device)
        x.index_put_((pb.image[ok] * self.n_pix + slot[ok],),
                     torch.stack([v.real, v.imag], -1).float(), accumulate=True)
        seen = torch.zeros(n_img, dtype=torch.bool, device=v.device)
        seen[pb.image] = True
        x = x.reshape(n_img, self.n_pix, 2)
        return torch.cat([x[..., 0], x[..., 1]], -1), seen

    def calibrate(self, batches: Batches, residual: Residual) -> None:
        """Per-input scales (1 / std over every visible tilt image of the set) in one
        streamed pass: ``batches()`` yields this rank's PointBatches, ``residual(pb)``
        the encoder's residual; moments summed over ranks as in
        :meth:`BackprojectEncoder.calibrate`."""
        inputs = StreamedMoments(2 * self.n_pix, self.scale.device)
        for pb in batches():
            x, seen = self.inputs(pb, residual(pb))
            inputs.add(x[seen])
        self.scale.copy_(inverse_std_scale(inputs.reduce()))

    def forward(self, pb: PointBatch, resid: torch.Tensor) -> torch.Tensor:
        x, seen = self.inputs(pb, resid)
        rot = pb.rotation.reshape(-1, 9).to(x.dtype)
        emb = self.per_tilt(torch.cat([x * self.scale, rot], -1))
        emb = emb.reshape(pb.n_particles, pb.n_slots, -1)
        seen = seen.reshape(pb.n_particles, pb.n_slots)
        if self.attention is not None:
            score = self.attention(emb).squeeze(-1).float()
            score = score.masked_fill(~seen, -1e4)
            wts = torch.softmax(score, dim=1) * seen
        else:
            wts = seen.float()
        wts = wts / wts.sum(1, keepdim=True).clamp_min(1e-6)
        pooled = (emb * wts[..., None].to(emb.dtype)).sum(1)
        return self.head(pooled)
