"""The 3D convolutional VAE (OPUS-TOMO style) and its loss through each particle's wedge.

Encoder: two channels on the working box ``s`` -- the particle's wedge-filtered residual
``ift(Y - W mu)`` (real space) and its own 3D CTF/wedge weight ``W`` as a centred Fourier
volume -- through stride-2 3D convolutions down to 4^3, then a linear layer to
(mean, log-variance) of a ``zdim`` Gaussian.

Decoder: a linear layer to a 4^3 grid of channels, then (trilinear upsampling x2, 3D
convolution) until the box is reached, one output channel: the correction to the
consensus map ``mu``, so ``V(z) = mu + a * dec(z)`` (``a`` the RMS of the consensus).

Loss (a Gaussian negative ELBO per particle), evaluated in Fourier space under the
particle's weight only::

    nll_n = 1/2 sum_q h(q) m_n(q) |Y_n(q) - W_n(q) V(q; z_n)|^2 / (W_n(q) s2(|q|))

with ``h`` the Hermitian multiplicity, ``m_n`` the samples where ``W_n`` is above the
floor (never the missing wedge) and ``s2`` the noise power per shell measured against
the consensus. Since ``Y = W V + noise`` with noise power ``W s2``, this is the exact
Gaussian likelihood of the particle's data under its CTF and wedge.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tomohet.methods.vae3d.data import weight_volume
from tomohet.physics.fourier import (
    ft_to_volume,
    hermitian_weights_3d,
    radial_shell_index,
    volume_to_ft,
)

__all__ = ["Vae3D", "particle_nll", "kl_divergence"]


def _n_halvings(s: int) -> int:
    n = 0
    while s > 4:
        s = (s + 1) // 2
        n += 1
    return n


class Encoder3D(nn.Module):
    def __init__(self, s: int, zdim: int, ch: int, hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, c = 2, ch
        for _ in range(max(1, _n_halvings(s))):
            layers += [nn.Conv3d(c_in, c, 3, stride=2, padding=1), nn.LeakyReLU(0.1)]
            c_in, c = c, min(4 * ch, 2 * c)
        self.conv = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(4))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 64, hidden), nn.LeakyReLU(0.1),
                                  nn.Linear(hidden, 2 * zdim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.conv(x))
        mu, lv = out.chunk(2, dim=-1)
        return mu, lv.clamp(-12, 8)


def _start_size(s: int) -> tuple[int, int]:
    """(start grid s0, doublings n) with ``s0 * 2^n = s``, ``s0 >= 3`` and n largest."""
    n = 0
    while s % 2 ** (n + 1) == 0 and s // 2 ** (n + 1) >= 3:
        n += 1
    return s // 2**n, n


class Decoder3D(nn.Module):
    """Linear layer to an s0^3 grid, then per doubling a stride-2 transposed convolution
    (kernel 2: cheap on CPU) and a 3^3 convolution below the last doubling; the last
    doubling gives the single output channel."""

    def __init__(self, s: int, zdim: int, ch: int) -> None:
        super().__init__()
        s0, n = _start_size(s)
        c = ch * 2 ** min(n, 2)
        self.s0, self.c0 = s0, c
        self.inp = nn.Linear(zdim, c * s0**3)
        ups: list[nn.Module] = []
        for _ in range(max(n - 1, 0)):
            c_out = max(ch, c // 2)
            ups += [nn.ConvTranspose3d(c, c_out, 2, stride=2), nn.LeakyReLU(0.1),
                    nn.Conv3d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.1)]
            c = c_out
        self.ups = nn.Sequential(*ups)
        # a linear path z -> map beside the convolutions: the model contains probabilistic
        # PCA, whose gradients are informative from the first step (the convolutions alone
        # sat on a plateau with the latent collapsed)
        self.linear = nn.Linear(zdim, s**3, bias=False)
        self.s = s
        self.out: nn.Conv3d | nn.ConvTranspose3d = (nn.ConvTranspose3d(c, 1, 2, stride=2) if n > 0
                               else nn.Conv3d(c, 1, 3, padding=1))
        with torch.no_grad():  # start at the consensus exactly
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.out.weight)
            if self.out.bias is not None:
                nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.inp(z), 0.1).reshape(-1, self.c0, self.s0, self.s0, self.s0)
        lin = self.linear(z).reshape(-1, self.s, self.s, self.s)
        return self.out(self.ups(x))[:, 0] + lin


class Vae3D(nn.Module):
    """Encoder, decoder and the buffers of the data model (consensus ``mu`` in real space
    on the working box, noise power per shell, input scales)."""

    consensus: torch.Tensor
    noise: torch.Tensor
    scales: torch.Tensor
    enc_filter: torch.Tensor

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        c = self.config
        s, z = int(c["small"]), int(c["zdim"])
        g = torch.Generator().manual_seed(int(c.get("seed", 0)))
        with torch.random.fork_rng(devices=[]):  # leave the global RNG untouched
            torch.manual_seed(int(g.initial_seed()))
            self.encoder = Encoder3D(s, z, int(c["enc_channels"]), int(c["enc_hidden"]))
            self.decoder = Decoder3D(s, z, int(c["dec_channels"]))
        self.register_buffer("consensus", torch.zeros(s, s, s))
        self.register_buffer("noise", torch.ones(s // 2 + 1))
        self.register_buffer("scales", torch.ones(3))  # residual rms, mean weight, map rms
        # the residual channel is low-passed at ``enc_lowpass`` of Nyquist (1: not at all)
        cut = float(c.get("enc_lowpass", 1.0)) * (s // 2)
        r = radial_shell_index(s, 3).float()
        self.register_buffer("enc_filter", torch.exp(-0.5 * (r / max(cut, 1.0)) ** 2)
                             if cut < s // 2 else torch.ones_like(r))

    @property
    def zdim(self) -> int:
        return int(self.config["zdim"])

    @property
    def small(self) -> int:
        return int(self.config["small"])

    def encoder_input(self, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(B, 2, s, s, s): wedge-filtered residual and the weight volume, scaled."""
        mu_ft = volume_to_ft(self.consensus)
        resid = ft_to_volume((y - w * mu_ft) * self.enc_filter, self.small) / self.scales[0]
        return torch.stack([resid, weight_volume(w) / self.scales[1]], dim=1)

    def encode(self, y: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(self.encoder_input(y, w))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Real maps (B, s, s, s) on the working box."""
        return self.consensus[None] + self.scales[2] * self.decoder(z)

    @torch.no_grad()
    def volumes(self, z: torch.Tensor, chunk: int = 4) -> torch.Tensor:
        """Maps (n, D, D, D) on the particles' box (Fourier-padded from the working box)
        at latents ``z`` (n, Z), on the CPU."""
        self.eval()
        dev = self.consensus.device
        box = int(self.config.get("box", self.small))
        out = []
        for start in range(0, len(z), chunk):
            v = self.decode(z[start : start + chunk].to(dev).float())
            out.append(pad_volume(v, box).cpu())
        return torch.cat(out) if out else torch.zeros((0, box, box, box))


def pad_volume(v: torch.Tensor, box: int) -> torch.Tensor:
    """Real maps (B, s, s, s) -> (B, D, D, D) by zero-padding their transform (the
    inverse of a Fourier crop)."""
    s = v.shape[-1]
    if s == box:
        return v
    ft = volume_to_ft(v) * (box / s) ** 3
    h = s // 2
    full = torch.zeros((*v.shape[:-3], box, box, box // 2 + 1), dtype=ft.dtype,
                       device=v.device)
    rows = torch.cat([torch.arange(h), torch.arange(box - h, box)]).to(v.device)
    part = torch.zeros((*v.shape[:-3], 2 * h, box, box // 2 + 1), dtype=ft.dtype,
                       device=v.device)
    part[..., :, rows, : h + 1] = ft
    full[..., rows, :, :] = part
    return ft_to_volume(full, box)


def particle_nll(v_ft: torch.Tensor, y: torch.Tensor, w: torch.Tensor, mask: torch.Tensor,
                 noise: torch.Tensor, shell: torch.Tensor) -> torch.Tensor:
    """Per-particle Gaussian NLL (B,) of data ``y`` given maps ``v_ft`` (B, s, s, s//2+1)
    through weights ``w``, over the samples in ``mask`` only (see the module docstring)."""
    s = y.shape[-3]
    herm = hermitian_weights_3d(s, device=y.device)
    s2 = noise[shell.clamp_max(len(noise) - 1)]
    wm = torch.where(mask, w, torch.ones_like(w))
    r = torch.where(mask, (y - w * v_ft).abs() ** 2 / (wm * s2), torch.zeros_like(w))
    return 0.5 * (r * herm).flatten(1).sum(1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per particle (B,)."""
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
