"""Networks of the tilt-series VAE: encoders pooled over tilt images, and a coordinate
decoder over 3D Fourier frequencies.

Decoder: ``V(k; z) = V0(k) + env(|k|) f(k, z)``, ``f`` an MLP of positional features of
``k`` (random Gaussian Fourier features or geometric per-axis frequencies) and ``z``.
Real volumes have ``V(-k) = conj V(k)``: ``f`` is evaluated at the representative of
``+-k`` in the half space ``kx > 0`` (ties broken by ky, then kz) and conjugated for the
other half, so every decoded map is real.

The volume is represented in Fourier space (complex values with Friedel symmetry
enforced by construction), which carries the same information as cryoDRGN's Hartley
representation; ``|k| <= 1/2`` cycles/pixel is decoded, and only the samples inside each
image's dose mask are ever evaluated during training.

Encoders (both see the residual ``r = X - H V0`` of each sample, so they look at what the
consensus does not explain):

* ``backproject`` (default): each tilt image's ``conj(H) r`` is inserted into a low-
  resolution 3D Fourier lattice at its pose (nearest voxel, half space); the particle's
  visible tilts are pooled by a Wiener-weighted mean ``sum conj(H) r w / (sum |H|^2 w +
  lambda)`` and an MLP maps the pooled lattice to (mean, log-variance). Pose-aware and
  indifferent to how many tilts a particle has.
* ``tilt``: tomoDRGN / cryoDRGN-ET style -- an MLP per tilt image (its low-frequency
  ``conj(H) r`` and its rotation) gives an embedding; embeddings are pooled over the
  visible tilts by a masked mean or attention weights, then a second MLP gives the
  posterior.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tomohet.methods.vae.data import PointBatch
from tomohet.physics.fourier import (
    freq_grid_2d,
    freq_grid_3d,
    ft_to_volume,
    soft_sphere_mask,
    volume_to_ft,
)
from tomohet.physics.projection import VolumeProjector

__all__ = ["FourierFeatures", "FourierDecoder", "BackprojectEncoder", "TiltEncoder",
           "TiltVAE", "half_space_flip"]


def _mlp(n_in: int, hidden: int, layers: int, n_out: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = n_in
    for _ in range(max(layers, 1)):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, n_out))
    return nn.Sequential(*mods)


def _init_(module: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every Linear from ``generator`` (PyTorch's default scheme)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            with torch.no_grad():
                m.weight.copy_((torch.rand(m.weight.shape, generator=generator) * 2 - 1)
                               * bound)
                if m.bias is not None:
                    m.bias.copy_((torch.rand(m.bias.shape, generator=generator) * 2 - 1)
                                 * bound)


def half_space_flip(k: torch.Tensor) -> torch.Tensor:
    """(M, 3) frequencies -> (M,) bool: True where ``-k`` is the half-space representative."""
    kx, ky, kz = k[:, 0], k[:, 1], k[:, 2]
    return (kx < 0) | ((kx == 0) & ((ky < 0) | ((ky == 0) & (kz < 0))))


class FourierFeatures(nn.Module):
    """``[sin 2 pi k.b_j, cos 2 pi k.b_j]`` for fixed real-space vectors ``b_j`` (pixels).

    kind ``gaussian``: ``b ~ N(0, (sigma D)^2)`` per axis; ``geom``: per-axis geometric
    frequencies from 1 to D/2. ``n_freqs`` defaults to D (gaussian) or D/2 (geom, per
    axis). (M, 3) cycles/pixel -> (M, out_dim).
    """

    basis: torch.Tensor

    def __init__(self, box: int, kind: str = "gaussian", n_freqs: int | None = None,
                 sigma: float = 0.25, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if kind == "gaussian":
            n = n_freqs or box
            basis = torch.randn((3, n), generator=generator) * sigma * box
        elif kind == "geom":
            n = n_freqs or max(box // 2, 2)
            x = (box / 2) ** (torch.arange(n, dtype=torch.float32) / max(n - 1, 1))
            basis = torch.block_diag(x[None], x[None], x[None])  # (3, 3n)
        else:
            raise ValueError(f"unknown positional encoding {kind!r} (gaussian, geom)")
        self.register_buffer("basis", basis.float())
        self.out_dim = 2 * self.basis.shape[1]

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        # phases need float32 even under autocast: bf16 would scramble them
        with torch.autocast(k.device.type, enabled=False):
            phase = (2 * math.pi) * (k.float() @ self.basis.float())
            return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


class FourierDecoder(nn.Module):
    """``env(|k|) f(k, z)`` as a complex number per frequency (see module docstring)."""

    envelope: torch.Tensor

    def __init__(self, box: int, zdim: int, hidden: int = 256, layers: int = 3,
                 pe: str = "gaussian", pe_dim: int | None = None, feat_sigma: float = 0.25,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.box = box
        self.features = FourierFeatures(box, pe, pe_dim, feat_sigma, generator)
        self.inp = nn.Linear(self.features.out_dim, hidden)
        self.zin = nn.Linear(zdim, hidden, bias=False) if zdim > 0 else None
        self.body = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(layers - 1)])
        self.out = nn.Linear(hidden, 2)
        self.register_buffer("envelope", torch.ones(box // 2 + 2))

    def reset_output(self) -> None:
        """Zero the last layer: the decoder starts as the consensus map."""
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias.zero_()

    def env(self, k: torch.Tensor) -> torch.Tensor:
        """Envelope at ``|k|`` (M,), linear between integer shells."""
        r = k.norm(dim=-1) * self.box
        n = self.envelope.shape[0]
        i0 = r.floor().long().clamp(0, n - 2)
        f = (r - i0).clamp(0, 1)
        return self.envelope[i0] * (1 - f) + self.envelope[i0 + 1] * f

    def forward(self, k: torch.Tensor, z: torch.Tensor | None,
                particle: torch.Tensor | None = None) -> torch.Tensor:
        """k (M, 3) cycles/px; z (B, Z) and particle (M,) index into z -> complex (M,).

        Without ``particle`` every point uses ``z[0]``.
        """
        flip = half_space_flip(k)
        kc = torch.where(flip[:, None], -k, k)
        h = self.inp(self.features(kc))
        if self.zin is not None and z is not None:
            zh = self.zin(z.to(h.dtype))
            h = h + (zh[particle] if particle is not None else zh[:1])
        h = F.relu(h)
        for layer in self.body:
            h = F.relu(layer(h))
        out = self.out(h).float()
        im = torch.where(flip, -out[:, 1], out[:, 1])
        return torch.complex(out[:, 0], im) * self.env(k)


class BackprojectEncoder(nn.Module):
    """Wiener-pooled low-resolution back-projection of the residuals -> posterior."""

    lookup: torch.Tensor
    scale: torch.Tensor
    lam: torch.Tensor

    def __init__(self, box: int, zdim: int, radius: int, hidden: int = 256,
                 layers: int = 2) -> None:
        super().__init__()
        self.box, self.radius = box, int(radius)
        r = self.radius
        c = torch.arange(-r, r + 1)
        gz, gy, gx = torch.meshgrid(c, c, c, indexing="ij")
        pts = torch.stack([gx, gy, gz], -1).reshape(-1, 3)
        keep = (pts.float().norm(dim=-1) <= r) & ~half_space_flip(pts.float())
        lookup = torch.full((len(pts),), -1, dtype=torch.long)
        lookup[keep] = torch.arange(int(keep.sum()))
        self.n_vox = int(keep.sum())
        self.register_buffer("lookup", lookup, persistent=False)
        self.register_buffer("scale", torch.ones(2 * self.n_vox))
        self.register_buffer("lam", torch.tensor(1.0))
        self.mlp = _mlp(2 * self.n_vox, hidden, layers, 2 * zdim)

    def pooled(self, pb: PointBatch, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(num (B, G, 2), den (B, G)) sums of ``conj(H) r w`` and ``|H|^2 w``."""
        r = self.radius
        idx = torch.round(pb.freq * self.box).long()
        flip = half_space_flip(idx.float())
        idx = torch.where(flip[:, None], -idx, idx)
        inside = (idx.abs() <= r).all(-1)
        flat = ((idx[:, 2] + r) * (2 * r + 1) + (idx[:, 1] + r)) * (2 * r + 1) + idx[:, 0] + r
        slot = torch.where(inside, self.lookup[flat.clamp(0, len(self.lookup) - 1)], -1)
        ok = slot >= 0
        h, w = pb.transfer[ok], pb.weight()[ok]  # cos(tilt) / M^2 (premultiplied)
        v = h.conj() * resid[ok] * w
        v = torch.where(flip[ok], v.conj(), v)
        tgt = pb.particle[ok] * self.n_vox + slot[ok]
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
        return torch.cat([val[..., 0], val[..., 1]], dim=-1)

    def calibrate(self, batches) -> None:
        """Set ``lam`` (0.1 x mean non-zero weight) and per-input scales (1 / std) from
        an iterable of (PointBatch, residual)."""
        dens, vals = [], []
        for pb, resid in batches:
            num, den = self.pooled(pb, resid)
            dens.append(den[den > 0])
            vals.append((num, den))
        lam = 0.1 * float(torch.cat(dens).mean()) if dens else 1.0
        self.lam.fill_(max(lam, 1e-12))
        x = torch.cat([torch.cat([(n / (d + self.lam)[..., None])[..., 0],
                                  (n / (d + self.lam)[..., None])[..., 1]], -1)
                       for n, d in vals])
        std = x.std(0) if len(x) > 1 else torch.ones(x.shape[1], device=x.device)
        self.scale.copy_(1.0 / std.clamp_min(float(std.mean()) * 1e-3 + 1e-12))

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
        lookup = torch.full((len(k),), -1, dtype=torch.long)
        lookup[keep] = torch.arange(int(keep.sum()))
        self.n_pix = int(keep.sum())
        self.register_buffer("lookup", lookup, persistent=False)
        self.register_buffer("scale", torch.ones(2 * self.n_pix))
        self.per_tilt = _mlp(2 * self.n_pix + 9, hidden, layers, t_emb)
        self.attention = nn.Linear(t_emb, 1) if pooling == "attention" else None
        self.head = _mlp(t_emb, hidden, 1, 2 * zdim)

    def inputs(self, pb: PointBatch, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (per-image inputs (B*S, 2P), visible (B*S,) bool)."""
        slot = self.lookup[pb.pix]
        ok = slot >= 0
        v = pb.transfer[ok].conj() * resid[ok]
        if pb.noise_scale is not None:  # premultiplied: conj(MH) M r' / M^2 = conj(H) r'
            v = v / pb.noise_scale[ok].clamp_min(1e-6)
        n_img = pb.n_particles * pb.n_slots
        x = torch.zeros((n_img * self.n_pix, 2), device=v.device)
        x.index_put_((pb.image[ok] * self.n_pix + slot[ok],),
                     torch.stack([v.real, v.imag], -1).float(), accumulate=True)
        seen = torch.zeros(n_img, dtype=torch.bool, device=v.device)
        seen[pb.image] = True
        x = x.reshape(n_img, self.n_pix, 2)
        return torch.cat([x[..., 0], x[..., 1]], -1), seen

    def calibrate(self, batches) -> None:
        xs = []
        for pb, resid in batches:
            x, seen = self.inputs(pb, resid)
            xs.append(x[seen])
        x = torch.cat(xs)
        std = x.std(0) if len(x) > 1 else torch.ones(x.shape[1], device=x.device)
        self.scale.copy_(1.0 / std.clamp_min(float(std.mean()) * 1e-3 + 1e-12))

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


class TiltVAE(nn.Module):
    """Encoder + decoder + the fixed consensus/noise buffers. See the module docstring.

    ``config`` keys: box, zdim, encoder ("backproject", "tilt" or "none"), pooling,
    enc_dim, enc_layers, enc_radius (Fourier pixels), dec_dim, dec_layers, pe, pe_dim,
    feat_sigma, use_consensus, max_freq (cycles/px), seed.
    """

    consensus: torch.Tensor
    noise: torch.Tensor
    encoder: BackprojectEncoder | TiltEncoder | None
    decoder: FourierDecoder

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = dict(config)
        c = self.config
        box, zdim = int(c["box"]), int(c["zdim"])
        g = torch.Generator().manual_seed(int(c.get("seed", 0)))
        with torch.random.fork_rng(devices=[]):  # leave the global RNG untouched
            self.decoder = FourierDecoder(box, zdim, c["dec_dim"], c["dec_layers"], c["pe"],
                                          c.get("pe_dim"), c["feat_sigma"], g)
            enc = c["encoder"]
            if enc == "backproject":
                self.encoder = BackprojectEncoder(box, zdim, c["enc_radius"], c["enc_dim"],
                                                  c["enc_layers"])
            elif enc == "tilt":
                self.encoder = TiltEncoder(box, zdim, c["enc_radius"], c["enc_dim"],
                                           c["enc_layers"], pooling=c.get("pooling", "mean"))
            elif enc == "none":
                self.encoder = None
            else:
                raise ValueError(f"unknown encoder {enc!r} (backproject, tilt, none)")
        _init_(self, g)
        self.decoder.reset_output()
        self.register_buffer("consensus", torch.zeros((box, box, box)))
        self.register_buffer("noise", torch.ones(box // 2 + 2))
        self._proj: VolumeProjector | None = None

    @property
    def zdim(self) -> int:
        return int(self.config["zdim"])

    def set_consensus(self, volume: torch.Tensor) -> None:
        self.consensus.copy_(volume)
        self._proj = None

    def _projector(self) -> VolumeProjector:
        """Projector of the consensus map (rebuilt when the map or device changes)."""
        if self._proj is None or self._proj.device != self.consensus.device:
            self._proj = VolumeProjector(self.consensus.detach())
        return self._proj

    def consensus_at(self, k: torch.Tensor) -> torch.Tensor:
        """Consensus transform at (M, 3) frequencies -> complex (M,)."""
        return self._projector().sample(k.detach().float())[0]

    def encode(self, pb: PointBatch, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (mu, logvar), each (B, Z) float32; zeros without an encoder."""
        if self.encoder is None:
            z = torch.zeros((pb.n_particles, self.zdim), device=resid.device)
            return z, z
        out = self.encoder(pb, resid).float()
        return out[:, : self.zdim], out[:, self.zdim :].clamp(-12, 6)

    def field(self, k: torch.Tensor, z: torch.Tensor | None,
              particle: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded transform at (M, 3) frequencies (consensus included when used)."""
        out = self.decoder(k, z, particle)
        if self.config.get("use_consensus", True):
            out = out + self.consensus_at(k)
        return out

    @torch.no_grad()
    def volumes(self, z: torch.Tensor, chunk: int = 4, mask: bool = True) -> torch.Tensor:
        """Real maps at latents z (n, Z) -> (n, D, D, D) on the CPU.

        The decoder is evaluated on the full 3D rfft grid inside ``max_freq`` and added
        to the exact transform of the consensus (not its gridding-corrected projector
        samples); the sum is inverted with :func:`ft_to_volume`.
        """
        box = int(self.config["box"])
        dev = self.consensus.device
        k = freq_grid_3d(box, device=dev).reshape(-1, 3)
        inside = k.norm(dim=-1) <= float(self.config.get("max_freq", 0.5))
        kin = k[inside]
        base = torch.zeros(k.shape[0], dtype=torch.complex64, device=dev)
        if self.config.get("use_consensus", True):
            base = volume_to_ft(self.consensus.float()).reshape(-1).to(torch.complex64)
        out = []
        for s in range(0, len(z), chunk):
            zz = z[s : s + chunk].to(dev).float()
            n = len(zz)
            part = torch.arange(n, device=dev).repeat_interleave(len(kin))
            vals = self.decoder(kin.repeat(n, 1), zz, part).reshape(n, -1)
            ft = base.repeat(n, 1)
            ft[:, inside] += vals.to(torch.complex64)
            out.append(ft_to_volume(ft.reshape(n, box, box, box // 2 + 1), box).cpu())
        vols = torch.cat(out) if out else torch.zeros((0, box, box, box))
        if mask:  # the consensus's soft sphere: nothing outside the particle is data
            vols = vols * soft_sphere_mask(box, box / 2 - 2, edge_px=2.0)
        return vols
