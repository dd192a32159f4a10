"""Loss of the tilt-series VAE: the Gaussian negative ELBO of a batch of particles.

Per batch of ``B`` particles::

    L = (1/B) sum_particles [ sum_samples w |X - H V(k; z)|^2 / (2 s2(|k|)) + beta KL ]

with ``H`` the CTF x exposure filter x shift phase of each image, ``w = cos(tilt) x``
Hermitian multiplicity (``/ M^2`` for CTF-premultiplied data), ``s2`` the noise power per
2D shell (see :mod:`tomohet.methods.vae.train`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from tomohet.methods.vae.data import PointBatch
from tomohet.methods.vae.model import TiltVAE

__all__ = ["batch_loss", "autocast"]


def autocast(device: torch.device, amp: bool) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA when ``amp`` is asked for (opt-in), else nothing."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def batch_loss(model: TiltVAE, pb: PointBatch, beta: float, eps: torch.Tensor | None,
               amp: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
    """Negative ELBO per particle of one batch (see module docstring).

    eps (B, Z) standard normal draws (None: use the posterior mean).
    -> (loss, {"nll", "kl", "mse"} per particle / per sample, for logging).
    """
    dev = pb.data.device
    v0 = model.consensus_at(pb.freq) if model.config.get("use_consensus", True) else None
    resid0 = pb.data if v0 is None else pb.data - pb.transfer * v0
    with autocast(dev, amp):
        mu, logvar = model.encode(pb, resid0)
    z = mu if eps is None else mu + torch.exp(0.5 * logvar) * eps.to(dev)
    with autocast(dev, amp):
        dec = model.decoder(pb.freq, z, pb.particle)
    pred = dec if v0 is None else dec + v0
    r = pb.data - pb.transfer * pred.to(pb.data.dtype)
    s2 = model.noise[pb.shell.clamp_max(model.noise.shape[0] - 1)]
    per = (r.real**2 + r.imag**2) * (0.5 * pb.herm * pb.weight()) / s2
    b = pb.n_particles
    nll = per.sum() / b
    kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum() / b
    loss = nll + beta * kl
    return loss, {"nll": float(nll.detach()), "kl": float(kl.detach()),
                  "mse": float(per.detach().mean())}
