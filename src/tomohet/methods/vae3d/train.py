"""Epochs and encoding of the 3D VAE.

The random draws of an epoch (visiting order, reparameterisation noise) are the tilt VAE's
keyed per-particle draws (:func:`tomohet.methods.vae.train.epoch_draws`): they depend on
each particle's (tomogram, name), the seed and the epoch only, so a permuted star gives the
same batches and noise per particle and a resumed run continues exactly where the
uninterrupted one would be.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from tomohet import parallel
from tomohet.methods.vae.train import epoch_draws
from tomohet.methods.vae3d.data import SubtomoData, loss_mask
from tomohet.methods.vae3d.model import Vae3D, kl_divergence, particle_nll
from tomohet.physics.fourier import radial_shell_index, volume_to_ft

__all__ = ["batch_loss", "train_epoch", "encode_all", "loss_of"]


def batch_loss(model: Vae3D, y: torch.Tensor, w: torch.Tensor, eps: torch.Tensor | None,
               beta: float, floor: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean negative ELBO of a batch; ``eps`` None: the posterior means (no sampling)."""
    mu, lv = model.encode(y, w)
    z = mu if eps is None else mu + eps * (0.5 * lv).exp()
    v_ft = volume_to_ft(model.decode(z))
    shell = radial_shell_index(model.small, 3, device=y.device)
    nll = particle_nll(v_ft, y, w, loss_mask(w, floor), model.noise, shell)
    kl = kl_divergence(mu, lv)
    loss = (nll + beta * kl).mean()
    return loss, {"nll": float(nll.mean().detach()), "kl": float(kl.mean().detach())}


def train_epoch(model: Vae3D, optimizer: torch.optim.Optimizer, data: SubtomoData,
                epoch: int, *, seed: int, batch_size: int, beta: float, floor: float,
                names: list[str], tomo_names: list[str], device: torch.device,
                progress: Callable[[int, float], None] | None = None) -> dict[str, float]:
    """One pass over the particles in the keyed order of ``epoch``; under
    ``torch.distributed`` each rank computes its share of every batch and the gradients
    are summed over ranks (:func:`tomohet.parallel.all_reduce_grads`)."""
    order, _scores, eps_all = epoch_draws(names, tomo_names, seed, epoch, 0, model.zdim)
    model.train()
    tot = {"loss": 0.0, "nll": 0.0, "kl": 0.0}
    n_seen = 0
    t0 = time.perf_counter()
    n_ranks, me = parallel.world(), parallel.rank()
    for s in range(0, len(order), batch_size):
        batch = torch.as_tensor(order[s : s + batch_size])
        b = len(batch)
        # this rank's share of the keyed batch (every n_ranks-th particle); its loss
        # weighted by its share and the gradients summed over ranks are the whole
        # batch's, as in the tilt VAE (tomohet.methods.vae.train.train_epoch)
        rows = batch[me::n_ranks]
        optimizer.zero_grad(set_to_none=True)
        share = np.zeros(3)
        if len(rows):
            y, w = (t.to(device) for t in data.rows(rows))
            loss, parts = batch_loss(model, y, w, eps_all[rows].to(device), beta, floor)
            (loss * (len(rows) / b) if n_ranks > 1 else loss).backward()
            share[:] = [float(loss.detach()) * len(rows), parts["nll"] * len(rows),
                        parts["kl"] * len(rows)]
        parallel.all_reduce_grads(model)
        optimizer.step()
        parallel.all_reduce_sum([share])
        n_seen += b
        for i, k in enumerate(("loss", "nll", "kl")):
            tot[k] += float(share[i])
        if progress is not None:
            progress(b, tot["loss"] / n_seen)
    out: dict[str, Any] = {k: v / max(n_seen, 1) for k, v in tot.items()}
    out["seconds"] = time.perf_counter() - t0
    return out


@torch.no_grad()
def encode_all(model: Vae3D, data: SubtomoData, device: torch.device,
               batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances ((N, Z), (N, Z)) on the CPU, in particle order;
    each particle on its own (no batch statistics), so independent of batch size and row
    order. Under ``torch.distributed`` each rank encodes only its blocks of ``batch``
    particles (block ``b`` is rank ``b % world``'s, as in the set-up passes) and the rows
    are summed over ranks (each row is one rank's, the others add zeros: exact), so every
    rank ends with every row (a collective)."""
    model.eval()
    n, z = data.n_particles, model.zdim
    mus, lvs = torch.zeros((n, z)), torch.zeros((n, z))
    for idx, y, w in data.blocks(batch, owned_only=True):
        mu, lv = model.encode(y.to(device), w.to(device))
        mus[idx] = mu.float().cpu()
        lvs[idx] = lv.float().cpu()
    parallel.all_reduce_sum([mus, lvs])
    return mus, lvs


def loss_of(model: Vae3D, data: SubtomoData, floor: float, device: torch.device,
            batch: int = 32) -> np.ndarray:
    """Per-particle negative ELBO at the posterior means (no sampling), (N,) in particle
    order; under ``torch.distributed`` each rank computes its blocks and every rank gets
    every value (summed over ranks as in :func:`encode_all`; a collective)."""
    model.eval()
    out = np.zeros(data.n_particles, dtype=np.float32)
    with torch.no_grad():
        shell = radial_shell_index(model.small, 3, device=device)
        for idx, y_cpu, w_cpu in data.blocks(batch, owned_only=True):
            y, w = y_cpu.to(device), w_cpu.to(device)
            mu, lv = model.encode(y, w)
            v_ft = volume_to_ft(model.decode(mu))
            nll = particle_nll(v_ft, y, w, loss_mask(w, floor), model.noise, shell)
            out[idx] = (nll + kl_divergence(mu, lv)).cpu().numpy()
    parallel.all_reduce_sum([out])
    return out
