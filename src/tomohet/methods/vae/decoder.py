"""Coordinate decoder of the tilt-series VAE over 3D Fourier frequencies.

``V(k; z) = V0(k) + env(|k|) f(k, z)``, ``f`` an MLP of positional features of ``k``
(random Gaussian Fourier features or geometric per-axis frequencies) and ``z``. Real
volumes have ``V(-k) = conj V(k)``: ``f`` is evaluated at the representative of ``+-k`` in
the half space ``kx > 0`` (ties broken by ky, then kz) and conjugated for the other half,
so every decoded map is real.

The volume is represented in Fourier space (complex values with Friedel symmetry
enforced by construction), which carries the same information as cryoDRGN's Hartley
representation; ``|k| <= 1/2`` cycles/pixel is decoded, and only the samples inside each
image's dose mask are ever evaluated during training.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tomohet.methods.vae.layers import half_space_flip

__all__ = ["FourierFeatures", "FourierDecoder"]


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
