"""The E-step of an EM pass (:mod:`tomohet.methods.em`): per batch, the class
posteriors, the summed log evidence and each image's residual power against its most
probable class, on the compacted pixels (:mod:`tomohet.physics.compact`) or on the dense
images with an optional local pose search. Pure functions of their inputs; ``tick`` is
the engine's stage timer (``tick(stage, t0) -> now``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from tomohet.methods.em_steps import tempered_posteriors
from tomohet.physics.compact import (
    CompactBatch,
    CompactProjector,
    log_likelihoods_compact,
    project_compact,
)
from tomohet.physics.forward import (
    NoiseModel,
    PreparedBatch,
    log_likelihoods,
    model_transforms,
)
from tomohet.physics.projection import VolumeProjector

__all__ = ["e_step_compact", "e_step", "tilt_weights"]

Tick = Callable[[str, float], float]


def e_step_compact(proj: CompactProjector, cb: CompactBatch, tilt_w: torch.Tensor | None,
                   noise: NoiseModel, log_prior: torch.Tensor, max_top: float | None,
                   tick: Tick):
    """Posteriors (B, K), summed log evidence and the residual power (M,) of every kept
    pixel against its particle's most probable class. ``tilt_w`` (B, T): per-tilt
    weights of the log-likelihoods (None: plain sums)."""
    t0 = time.perf_counter()
    model = project_compact(proj, cb)  # (K, M)
    t0 = tick("projection", t0)
    if tilt_w is not None:
        ll_t = log_likelihoods_compact(cb, model, noise, per_tilt=True)  # (B, T, K)
        ll = (ll_t * tilt_w[..., None]).sum(1)
    else:
        ll = log_likelihoods_compact(cb, model, noise)  # (B, K)
    evidence = torch.logsumexp(ll + log_prior, dim=-1)
    post = tempered_posteriors(ll, log_prior, max_top)
    kmap = post.argmax(-1).index_select(0, cb.particle)  # (M,)
    pick = model.T.gather(1, kmap[:, None])[:, 0]  # each pixel's most probable class
    resid = cb.data - cb.transfer * pick
    tick("likelihood", t0)
    return post, evidence.sum(), resid.real**2 + resid.imag**2


def e_step(proj: VolumeProjector, prep: PreparedBatch, noise: NoiseModel,
           log_prior: torch.Tensor, deltas: torch.Tensor | None, n_classes: int,
           per_tilt: bool, max_top: float | None, tick: Tick):
    """Dense images: posteriors (B, K), summed log evidence, the best rotation per class
    (a list of K rotation tensors; None without a local search ``deltas`` (J, 3, 3)) and
    the residual power of every pixel against the most probable class. ``per_tilt``:
    tilt-weighted log-likelihoods (:func:`tilt_weights`)."""
    k = n_classes
    b = prep.data.shape[0]
    t0 = time.perf_counter()
    model = model_transforms(proj, prep, deltas)  # (K, [J,] B, ...)
    t0 = tick("projection", t0)
    if deltas is None:
        model = model[:, None]
    j = model.shape[1]
    if per_tilt:
        ll_t = log_likelihoods(prep, model.flatten(0, 1), noise, per_tilt=True)
        ll = (ll_t * tilt_weights(prep)[..., None]).sum(1)  # (B, K*J)
    else:
        ll = log_likelihoods(prep, model.flatten(0, 1), noise)  # (B, K*J)
    ll = ll.reshape(b, k, j)
    ll_class = torch.logsumexp(ll, dim=-1) - math.log(j)
    joint = ll_class + log_prior
    evidence = torch.logsumexp(joint, dim=-1)
    post = tempered_posteriors(ll_class, log_prior, max_top)
    best_j = ll.argmax(-1)  # (B, K)
    kmap = post.argmax(-1)
    bidx = torch.arange(b, device=post.device)
    pick = model[kmap, best_j[bidx, kmap], bidx]
    resid = prep.data - prep.transfer * pick
    tick("likelihood", t0)
    best_rot = None
    if deltas is not None:
        r = prep.rotation
        best_rot = []
        for c in range(k):
            d = deltas[best_j[:, c]]  # (B, 3, 3)
            best_rot.append(r @ (d[:, None] if r.ndim == 4 else d))
    return post, evidence.sum(), best_rot, resid.real**2 + resid.imag**2


def tilt_weights(prep: PreparedBatch) -> torch.Tensor:
    """Tilt weights (B, T) summing to the number of visible tilts (cos tilt x dose)."""
    from tomohet.physics.ctf import tilt_weight

    if prep.tilt_deg is None:
        return prep.visible.float()
    w = tilt_weight(prep.tilt_deg) * prep.visible.float()
    return w / w.sum(1, keepdim=True).clamp_min(1e-6) * prep.visible.sum(1, keepdim=True)
