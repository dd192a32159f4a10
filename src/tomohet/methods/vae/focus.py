"""A real-space focus mask applied to the back-projection encoder's Fourier lattice.

The :class:`~tomohet.methods.vae.encoders.BackprojectEncoder` pools a particle's residuals
into a half-space lattice of 3D Fourier coefficients ``c(k)``, ``|k| <= r`` (Fourier
pixels of the box ``D``). Multiplying the map those coefficients describe by a real mask
``m`` is, on the lattice, the circular convolution with the mask's transform::

    c'(j) = sum_k c(k) M(j - k),    M(q) = FT[m](q) / D^3,   |j|, |k| <= r

(``c(-k) = conj c(k)`` fills the other half space). Only ``M(q)`` with ``|q| <= 2 r``
enters, so the product is computed exactly by FFTs on a small grid of ``L = 4 r + 2``
points per axis (``L > 4 r``: no index of ``j - k`` wraps onto another), whatever the box
(or on the box's own grid, ``L = D``, when that is smaller: masking in the box is itself
the circular convolution modulo ``D``):
the mask is cropped to those frequencies once (:func:`focus_kernel`) and every batch is
one inverse FFT, a product and one FFT of ``(B, L, L, L)`` (:func:`apply_focus`).

Why: a small component's variation sits in a few hundred of the lattice's coefficients'
worth of real-space voxels; over the whole particle its signal is buried in the noise of
every other voxel and the VAE's latent collapses (the same reason the linear methods take
their features inside the discovered focus, :mod:`tomohet.methods.focus`).
"""

from __future__ import annotations

import torch

__all__ = ["focus_grid_size", "focus_kernel", "apply_focus"]


def focus_grid_size(radius: int, box: int) -> int:
    """Points per axis of the grid on which the lattice is masked: ``min(4 r + 2, D)``."""
    return min(4 * int(radius) + 2, int(box))


def focus_kernel(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """The mask (D, D, D), centred at ``D // 2``, as the real (L, L, L) grid function
    whose product with a lattice's map gives the masked lattice (:func:`apply_focus`):
    ``ifftn(L^3 M)`` with ``M`` the mask's transform / ``D^3`` at ``|q| <= 2 r``."""
    d = mask.shape[-1]
    if not 0 < 2 * int(radius) < d:
        raise ValueError(f"focus: encoder radius {radius} out of range for box {d} "
                         f"(needs 0 < r < D / 2)")
    n = focus_grid_size(radius, d)
    centred = torch.fft.ifftshift(mask.double(), dim=(-3, -2, -1))
    if n == d:  # the box's own grid: the mask itself, origin moved to index 0
        return centred.float()
    ft = torch.fft.fftn(centred) / d**3
    q = torch.fft.fftfreq(n, 1.0 / n).round().long()  # integer frequencies of the L grid
    qz, qy, qx = torch.meshgrid(q, q, q, indexing="ij")
    keep = (qx**2 + qy**2 + qz**2) <= (2 * int(radius)) ** 2
    cropped = torch.where(keep, ft[qz % d, qy % d, qx % d], torch.zeros((), dtype=ft.dtype))
    return (torch.fft.ifftn(cropped * n**3).real).float()


def apply_focus(values: torch.Tensor, points: torch.Tensor, kernel: torch.Tensor
                ) -> torch.Tensor:
    """Mask the maps of half-space lattices: values (B, G, 2) real and imaginary parts of
    ``c(k)`` at points (G, 3) integer (x, y, z), kernel (L, L, L) from
    :func:`focus_kernel` -> (B, G, 2) the masked maps' coefficients at the same points."""
    n = kernel.shape[-1]
    b = values.shape[0]
    c = torch.complex(values[..., 0].float(), values[..., 1].float())
    grid = torch.zeros((b, n, n, n), dtype=torch.complex64, device=values.device)
    x, y, z = (points[:, i] for i in range(3))
    # the other half space first, so that self-conjugate points (the origin) keep c
    grid[:, (-z) % n, (-y) % n, (-x) % n] = c.conj()
    grid[:, z % n, y % n, x % n] = c
    real = torch.fft.ifftn(grid, dim=(-3, -2, -1)).real * kernel
    out = torch.fft.fftn(real, dim=(-3, -2, -1))[:, z % n, y % n, x % n]
    return torch.stack([out.real, out.imag], -1)
