"""Building blocks shared by the VAE's encoders and decoder."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = ["mlp", "init_linear_", "half_space_flip"]


def mlp(n_in: int, hidden: int, layers: int, n_out: int) -> nn.Sequential:
    """``layers`` (>= 1) Linear + ReLU blocks of width ``hidden``, then a Linear to ``n_out``."""
    mods: list[nn.Module] = []
    d = n_in
    for _ in range(max(layers, 1)):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, n_out))
    return nn.Sequential(*mods)


def init_linear_(module: nn.Module, generator: torch.Generator) -> None:
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
