"""Layouts of 3D CTF / missing-wedge weight volumes, converted to tomohet's rfft layout.

* ``"rfft"``: (D, D, D//2+1), zero frequency at index 0 (FFTW half layout; RELION 4
  pseudo-subtomogram weights and tomohet's own).
* ``"centered_full"``: (D, D, D) with the zero frequency at voxel D//2 (RELION 3.0 CTF
  volumes, STOPGAP/Dynamo-style wedge masks).
"""

from __future__ import annotations

import torch

from tomohet.data.sources import DataError

__all__ = ["weights_to_rfft", "rfft_to_centered_full", "detect_weight_layout"]


def detect_weight_layout(shape: tuple[int, ...], box: int) -> str:
    if tuple(shape[-3:]) == (box, box, box // 2 + 1):
        return "rfft"
    if tuple(shape[-3:]) == (box, box, box):
        return "centered_full"
    raise DataError(f"weight volume of shape {tuple(shape)} does not fit box {box}")


def weights_to_rfft(weights: torch.Tensor, layout: str, box: int) -> torch.Tensor:
    """(B, ...) weight volumes in ``layout`` -> (B, D, D, D//2+1) rfft layout."""
    if layout == "auto":
        layout = detect_weight_layout(tuple(weights.shape), box)
    if layout == "rfft":
        return weights
    if layout == "centered_full":
        unshifted = torch.fft.ifftshift(weights, dim=(-3, -2, -1))
        return unshifted[..., : box // 2 + 1].contiguous()
    raise DataError(f"unknown weight layout {layout!r}")


def rfft_to_centered_full(weights: torch.Tensor, box: int) -> torch.Tensor:
    """(B, D, D, D//2+1) rfft-layout weights of a real map (``W(-k) = W(k)``) -> the
    (B, D, D, D) ``"centered_full"`` layout (zero frequency at voxel D//2); the inverse of
    :func:`weights_to_rfft` for such weights."""
    d, h = box, box // 2 + 1
    full = torch.zeros((*weights.shape[:-3], d, d, d), dtype=weights.dtype,
                       device=weights.device)
    full[..., :h] = weights
    # x in (D//2+1 .. D-1) is -x' for x' = D - x: the mate at (-z, -y, x')
    neg = torch.arange(h, d, device=weights.device)
    mates = torch.roll(torch.flip(weights, dims=(-3, -2)), shifts=(1, 1), dims=(-3, -2))
    full[..., neg] = mates[..., d - neg]
    return torch.fft.fftshift(full, dim=(-3, -2, -1))

