"""Training loop of the tilt-series VAE: model preparation, epochs, encoding.

The loss is in :mod:`~tomohet.methods.vae.loss`, checkpoints in
:mod:`~tomohet.methods.vae.checkpoint`, per-epoch diagnostics and the history in
:mod:`~tomohet.methods.vae.diagnostics`.

Loss per batch of ``B`` particles (a Gaussian negative ELBO per particle)::

    L = (1/B) sum_particles [ sum_samples w |X - H V(k; z)|^2 / (2 s2(|k|)) + beta KL ]

with ``H`` the CTF x exposure filter x shift phase of each image (so dose and defocus
weight every sample), ``w = cos(tilt) x`` Hermitian multiplicity (``/ M^2`` for
CTF-premultiplied data ``X = M (H V + n)``, whose noise power is ``M^2 s2``), ``s2`` the noise power
per 2D shell measured against the consensus, and the sum running only over the samples
inside each image's dose mask (:mod:`tomohet.methods.vae.data`).

Every random draw of an epoch (particle order, tilt subsets, reparameterisation noise)
comes from keyed hashes of each particle's identity ``(tomogram, name)``, the seed and the
epoch (:func:`epoch_draws`, :mod:`tomohet.data.keys`), never from row positions: the
batches are consecutive runs of the particles sorted by their keys, so a permuted star
gives the same batches, the same tilt subsets and the same noise per particle, and an
epoch is the same whether training ran straight through or was resumed from the previous
epoch's checkpoint, and the same on CPU and CUDA up to float32 rounding -- unless ``amp`` (bf16
autocast on CUDA, off by default) is asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tomohet import parallel
from tomohet.methods.vae.data import SampleSource, all_tilts, sample_tilts
from tomohet.methods.vae.loss import autocast, batch_loss
from tomohet.methods.vae.model import TiltVAE
from tomohet.methods.vae.reference import (
    consensus_volume,
    iterate_all,
    noise_power,
    radial_envelope,
)

__all__ = ["epoch_draws", "prepare_model", "correction_weight", "train_epoch", "encode_all",
           "progress_bar"]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014), vectorised over uint64."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _keyed_uniforms(keys: np.ndarray, n: int) -> np.ndarray:
    """(N,) uint64 keys -> (N, n) float64 uniforms in [0, 1): counter j of key k."""
    with np.errstate(over="ignore"):
        ctr = keys[:, None] + _GOLDEN * np.arange(1, n + 1, dtype=np.uint64)[None]
    return (_splitmix64(ctr) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def epoch_draws(names: list[str], tomo_names: list[str] | None, seed: int, epoch: int,
                n_slots: int, zdim: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Every random choice of epoch ``epoch`` (0-based), per particle identity.

    -> (visiting order (N,) int64 of the rows, tilt scores (N, n_slots) uniforms for
    :func:`sample_tilts`, reparameterisation noise (N, zdim) standard normal). Each row's
    values depend only on its (tomogram, name), the seed and the epoch.
    """
    from tomohet.data.keys import keyed_order, particle_keys

    order = keyed_order(names, tomo_names, seed, stream=f"vae/order/{epoch}")
    keys = particle_keys(names, tomo_names, seed, stream=f"vae/draws/{epoch}")
    u = _keyed_uniforms(keys, n_slots + 2 * zdim)
    scores = torch.as_tensor(u[:, :n_slots], dtype=torch.float32)
    u1, u2 = 1.0 - u[:, n_slots : n_slots + zdim], u[:, n_slots + zdim :]  # u1 in (0, 1]
    eps = np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)  # Box-Muller
    return order, scores, torch.as_tensor(eps, dtype=torch.float32)


def prepare_model(model: TiltVAE, cache: SampleSource, device: torch.device,
                  halves: np.ndarray, batch: int = 32) -> dict[str, Any]:
    """Consensus map, noise power, decoder envelope and encoder input scales.

    cache on ``device``; halves (N,) 0/1 half set of each cached particle (from
    :func:`tomohet.data.keys.half_sets`). -> summary (consensus FSC at 0.5 in pixels,
    noise range). Under ``torch.distributed`` every pass reads only this rank's blocks of
    ``batch`` particles and sums over ranks: each rank ends with the same model.
    """
    vol, curve = consensus_volume(cache, device, halves, batch=batch)
    model.set_consensus(vol.to(device))
    model.noise.copy_(noise_power(cache, model._projector(), device, batch).to(device))
    n_env = len(model.decoder.envelope)
    env = radial_envelope(vol) * correction_weight(curve, n_env,
                                                   model.config.get("dec_weight", "fsc"))
    # past the shell where the half maps stop agreeing (FSC < 0.05) the data carry no
    # signal: the decoder adds nothing there and those samples are not used in training
    low = ((curve < 0.05) & (torch.arange(len(curve)) >= 2)).nonzero()
    max_shell = int(low[0]) if len(low) else None
    if max_shell is not None:
        env[max_shell + 1 :] = 0.0
        radius = int(model.config.get("enc_radius", 0))
        model.config["train_max_shell"] = max(max_shell, radius + 1)
    model.decoder.envelope.copy_(env.to(device))
    if model.encoder is not None:
        # this rank's blocks only (as the consensus and noise passes); the encoder sums
        # its input moments over ranks. Only the samples the encoder reads (the same
        # inputs, without sampling the consensus at every other frequency); residuals as
        # the encoder sees them in training
        use_v0 = model.config.get("use_consensus", True)
        inputs = cache.restrict(model.encoder.max_shell)
        model.encoder.calibrate(
            lambda: (pb for _rows, pb in iterate_all(inputs, batch, owned_only=True)),
            lambda pb: pb.data - pb.transfer * model.consensus_at(pb.freq) if use_v0
            else pb.data)
    below = (curve < 0.5).nonzero()
    return {"consensus_fsc05_px": int(below[0]) if len(below) else len(curve),
            "train_max_shell": model.config.get("train_max_shell"),
            "noise_min": float(model.noise.min()), "noise_max": float(model.noise.max())}


def correction_weight(curve: torch.Tensor, n: int, kind: str = "fsc") -> torch.Tensor:
    """Radial weight (n,) of the decoder's correction to the consensus.

    ``fsc``: ``2F / (1 + F)`` of the consensus half-map FSC ``F`` (the fraction of signal
    in a full-set average, clipped at 0), so that shells the data barely determine get
    little correction and the decoder does not fit noise there; ``none``: 1.
    """
    if kind == "none":
        return torch.ones(n)
    f = torch.zeros(n)
    m = min(n, len(curve))
    f[:m] = curve[:m].float().clamp(0, 0.999)
    w = 2 * f / (1 + f)
    if kind == "fsc2":
        w = w**2
    return w.clamp_min(1e-3)


def train_epoch(model: TiltVAE, optimizer: torch.optim.Optimizer, cache: SampleSource,
                epoch: int, *, seed: int, batch_size: int, n_tilts: int | None, beta: float,
                amp: bool = False, progress: Callable[[int, float], None] | None = None,
                names: list[str] | None = None, tomo_names: list[str] | None = None
                ) -> dict[str, float]:
    """One pass over the particles in the keyed order of :func:`epoch_draws`.

    n_tilts: tomoDRGN sampling of that many visible tilts per particle per epoch; None:
    every cached tilt (cryoDRGN-ET mode, where the cache holds the chosen tilts only).
    names, tomo_names: identity of each cached particle (default: its row number, which
    makes the draws depend on row order).
    """
    ident = names if names is not None else [str(i) for i in range(cache.n_particles)]
    order_np, scores, eps_all = epoch_draws(ident, tomo_names, seed, epoch,
                                            cache.visible.shape[1], model.zdim)
    order = torch.as_tensor(order_np)
    model.train()
    tot = {"loss": 0.0, "nll": 0.0, "kl": 0.0, "mse": 0.0}
    n_seen = 0
    t0 = time.perf_counter()
    n_ranks, me = parallel.world(), parallel.rank()
    for s in range(0, len(order), batch_size):
        rows = order[s : s + batch_size]
        b = len(rows)
        # this rank's sampler: every n_ranks-th particle of the (seed, epoch)-keyed batch;
        # its loss weighted by its share and the gradients summed over ranks are the
        # whole batch's (tomohet.parallel)
        rows = rows[me::n_ranks]
        optimizer.zero_grad(set_to_none=True)
        if len(rows):
            vis = cache.visible[rows]
            slots = all_tilts(vis) if n_tilts is None else sample_tilts(vis, n_tilts,
                                                                        scores[rows])
            eps = eps_all[rows]
            pb = cache.gather(rows, slots)
            loss, parts = batch_loss(model, pb, beta, eps, amp)
            (loss * (len(rows) / b) if n_ranks > 1 else loss).backward()
        parallel.all_reduce_grads(model)
        optimizer.step()
        n_seen += b
        share = np.zeros(4)
        if len(rows):
            share[:] = [float(loss.detach()) * len(rows)] + [parts[k] * len(rows)
                                                            for k in ("nll", "kl", "mse")]
        parallel.all_reduce_sum([share])
        for i, k in enumerate(("loss", "nll", "kl", "mse")):
            tot[k] += float(share[i])
        if progress is not None:
            progress(b, tot["loss"] / n_seen)
    out = {k: v / max(n_seen, 1) for k, v in tot.items()}
    out["seconds"] = time.perf_counter() - t0
    return out


@torch.no_grad()
def encode_all(model: TiltVAE, cache: SampleSource, batch: int = 128,
               amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and log-variance of every cached particle from all its cached tilts
    -> ((N, Z), (N, Z)) on the CPU. Under ``torch.distributed`` each rank encodes its
    blocks of ``batch`` particles and the rows are summed over ranks (each row is one
    rank's, the others add zeros: exact)."""
    model.eval()
    z = model.zdim
    mus = torch.zeros((cache.n_particles, z))
    lvs = torch.zeros((cache.n_particles, z))
    use_v0 = model.config.get("use_consensus", True)
    for rows, pb in iterate_all(cache, batch, owned_only=True):
        resid0 = pb.data - pb.transfer * model.consensus_at(pb.freq) if use_v0 else pb.data
        with autocast(pb.data.device, amp):
            mu, lv = model.encode(pb, resid0)
        mus[rows] = mu.float().cpu()
        lvs[rows] = lv.float().cpu()
    parallel.all_reduce_sum([mus, lvs])
    return mus, lvs


# ---------------------------------------------------------------- progress
def progress_bar(total: int, desc: str, enabled: bool) -> tuple[Callable[[int, float], None],
                                                                 Callable[[], None]]:
    """-> (update(n, loss), close()): a tqdm bar showing the running loss."""
    if not enabled:
        return (lambda _n, _loss: None), (lambda: None)
    bar = tqdm(total=total, desc=desc, unit="particle", leave=False)

    def update_bar(n: int, loss: float) -> None:
        bar.update(n)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    return update_bar, bar.close
