"""Per-particle pieces of an E/M pass (:mod:`tomohet.methods.em`): tempered class
posteriors, the name-defined order in which batches are formed, and the small rotations
of a local pose search. Each depends on a particle's own data or name only, never on its
row or batch.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.data.keys import keyed_order

__all__ = ["tempered_posteriors", "batch_order", "pose_deltas", "half_weights"]


def tempered_posteriors(ll: torch.Tensor, log_prior: torch.Tensor,
                        max_top: float | None = None, steps: int = 30) -> torch.Tensor:
    """Class posteriors softmax(ll / T + log prior), (B, K) -> (B, K), per particle.

    Without ``max_top`` T = 1 (the true posterior). With it (deterministic annealing),
    each particle gets its own T >= 1: the smallest at which its largest posterior does
    not exceed ``max_top`` (bisection on log T). A particle's result therefore depends on
    its own likelihoods only, never on the batch it was computed in. Early on, particles
    are shared between classes, so classes split along the largest differences first
    instead of freezing a random initial partition. The ranking of classes is kept.
    """
    post = torch.softmax(ll + log_prior, dim=-1)
    k = ll.shape[-1]
    if max_top is None or k < 2:
        return post
    target = max(float(max_top), 1.0 / k + 1e-3)
    over = post.max(-1).values > target  # only these particles are tempered
    if not bool(over.any()):
        return post
    lo = torch.zeros(ll.shape[:-1], dtype=ll.dtype, device=ll.device)  # log T
    hi = torch.full_like(lo, 30.0)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        top = torch.softmax(ll / torch.exp(mid)[..., None] + log_prior, dim=-1).max(-1).values
        high = top > target
        lo, hi = torch.where(high, mid, lo), torch.where(high, hi, mid)
    tempered = torch.softmax(ll / torch.exp(hi)[..., None] + log_prior, dim=-1)
    return torch.where(over[..., None], tempered, post)


def batch_order(names, tomo_names) -> np.ndarray:
    """Positions in the name-defined order in which batches are formed (keyed hash), so
    the same particles in any row order meet in the same batches."""
    return keyed_order(list(names), list(tomo_names), seed=0, stream="batch-order")


def pose_deltas(max_deg: float, steps: int, device: torch.device) -> torch.Tensor:
    """Identity plus rotations of up to ``max_deg`` about the 6 half-axes (J, 3, 3)."""
    from tomohet.physics.geometry import small_rotation

    mats = [torch.eye(3)]
    for s in range(1, steps + 1):
        ang = max_deg * s / steps
        for ax in range(3):
            for sign in (1.0, -1.0):
                v = torch.zeros(3)
                v[ax] = sign * ang
                mats.append(small_rotation(v))
    return torch.stack(mats).to(device)


def half_weights(w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Class weights (B, K) and half sets (B,) -> volume weights (2K, B), class c half h
    at 2c + h (the layout of a pass's 2K half-set volumes)."""
    b, k = w.shape
    vw = torch.zeros((b, k, 2), dtype=torch.float32, device=w.device)
    vw[torch.arange(b, device=w.device), :, h.long()] = w.float()
    return vw.reshape(b, 2 * k).T
