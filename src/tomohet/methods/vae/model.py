"""The tilt-series VAE: an encoder pooled over a particle's tilt images
(:mod:`~tomohet.methods.vae.encoders`), a coordinate decoder over 3D Fourier frequencies
(:mod:`~tomohet.methods.vae.decoder`) and the fixed consensus map and noise power.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tomohet.methods.base import default_mask
from tomohet.methods.vae.data import PointBatch
from tomohet.methods.vae.decoder import FourierDecoder
from tomohet.methods.vae.encoders import BackprojectEncoder, TiltEncoder
from tomohet.methods.vae.layers import init_linear_
from tomohet.physics.fourier import freq_grid_3d, ft_to_volume, volume_to_ft
from tomohet.physics.projection import VolumeProjector

__all__ = ["TiltVAE"]


class TiltVAE(nn.Module):
    """Encoder + decoder + the fixed consensus/noise buffers. See the module docstring.

    ``config`` keys: box, zdim, encoder ("backproject", "tilt" or "none"), pooling,
    enc_dim, enc_layers, enc_radius (Fourier pixels), dec_dim, dec_layers, pe, pe_dim,
    feat_sigma, use_consensus, max_freq (cycles/px), seed, focus (bool: the backproject
    encoder masks its lattice by a real-space focus, set with
    ``encoder.set_focus``; default False).
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
            if c.get("focus") and enc != "backproject":
                raise ValueError(f"a focus mask needs encoder 'backproject', not {enc!r}")
            if enc == "backproject":
                self.encoder = BackprojectEncoder(box, zdim, c["enc_radius"], c["enc_dim"],
                                                  c["enc_layers"], bool(c.get("focus")))
            elif enc == "tilt":
                self.encoder = TiltEncoder(box, zdim, c["enc_radius"], c["enc_dim"],
                                           c["enc_layers"], pooling=c.get("pooling", "mean"))
            elif enc == "none":
                self.encoder = None
            else:
                raise ValueError(f"unknown encoder {enc!r} (backproject, tilt, none)")
        init_linear_(self, g)
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
            vols = vols * default_mask(box)
        return vols
