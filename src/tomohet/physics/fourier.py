"""Fourier-space conventions and helpers shared by every kernel.

* 2D image transforms are ``rfft2(ifftshift(image))`` in the *rfft layout*
  ``(..., D, D // 2 + 1)``: the phase origin is the box centre (pixel ``D // 2``), rows are
  ``fftfreq(D)`` (ky) and columns ``rfftfreq(D)`` (kx), in cycles per pixel.
* 3D transforms are ``rfftn(ifftshift(volume))`` in ``(..., D, D, D // 2 + 1)`` with axes
  ``(kz, ky, kx)``.
* Sums of squared moduli over an rfft-layout array must count the columns ``0 < kx < 0.5``
  twice: :func:`hermitian_weights_2d` gives the multiplicities.
"""

from __future__ import annotations

import torch

__all__ = [
    "freq_grid_2d",
    "freq_grid_3d",
    "hermitian_weights_2d",
    "hermitian_weights_3d",
    "image_to_ft",
    "ft_to_image",
    "volume_to_ft",
    "ft_to_volume",
    "shift_phase_2d",
    "radial_shell_index",
    "lowpass_filter",
    "soft_sphere_mask",
]


def freq_grid_2d(box: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Frequencies (cycles/pixel) of the rfft layout, last dim (kx, ky). -> (D, D//2+1, 2)."""
    ky = torch.fft.fftfreq(box, device=device)
    kx = torch.fft.rfftfreq(box, device=device)
    gy, gx = torch.meshgrid(ky, kx, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def freq_grid_3d(box: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Frequencies (cycles/voxel) of the 3D rfft layout, last dim (kx, ky, kz).

    -> (D, D, D//2+1, 3), axes ordered (kz, ky, kx).
    """
    k = torch.fft.fftfreq(box, device=device)
    kx = torch.fft.rfftfreq(box, device=device)
    gz, gy, gx = torch.meshgrid(k, k, kx, indexing="ij")
    return torch.stack([gx, gy, gz], dim=-1)


def hermitian_weights_2d(box: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Multiplicity of each rfft-layout pixel in the full transform. -> (D, D//2+1)."""
    w = torch.full((box, box // 2 + 1), 2.0, device=device)
    w[:, 0] = 1.0
    if box % 2 == 0:
        w[:, -1] = 1.0
    return w


def hermitian_weights_3d(box: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Multiplicity of each 3D rfft-layout voxel in the full transform. -> (D, D, D//2+1)."""
    w2 = hermitian_weights_2d(box, device)
    return w2[None, :, :].expand(box, box, box // 2 + 1).clone()


def image_to_ft(images: torch.Tensor) -> torch.Tensor:
    """Real images (..., D, D) -> centred-origin rfft (..., D, D//2+1)."""
    return torch.fft.rfft2(torch.fft.ifftshift(images, dim=(-2, -1)))


def ft_to_image(ft: torch.Tensor, box: int | None = None) -> torch.Tensor:
    """Inverse of :func:`image_to_ft`. (..., D, D//2+1) -> (..., D, D)."""
    d = ft.shape[-2] if box is None else box
    return torch.fft.fftshift(torch.fft.irfft2(ft, s=(d, d)), dim=(-2, -1))


def volume_to_ft(volumes: torch.Tensor) -> torch.Tensor:
    """Real volumes (..., D, D, D) -> centred-origin rfft (..., D, D, D//2+1)."""
    return torch.fft.rfftn(torch.fft.ifftshift(volumes, dim=(-3, -2, -1)), dim=(-3, -2, -1))


def ft_to_volume(ft: torch.Tensor, box: int | None = None) -> torch.Tensor:
    """Inverse of :func:`volume_to_ft`. (..., D, D, D//2+1) -> (..., D, D, D)."""
    d = ft.shape[-3] if box is None else box
    vol = torch.fft.irfftn(ft, s=(d, d, d), dim=(-3, -2, -1))
    return torch.fft.fftshift(vol, dim=(-3, -2, -1))


def shift_phase_2d(shift_px: torch.Tensor, box: int) -> torch.Tensor:
    """Phase factors that translate images by ``shift_px`` (x, y) pixels.

    Multiplying an rfft-layout transform by this moves its content by ``+shift``.
    (..., 2) -> (..., D, D//2+1) complex.
    """
    k = freq_grid_2d(box, device=shift_px.device).to(shift_px.dtype)
    phase = -2 * torch.pi * (k * shift_px[..., None, None, :]).sum(-1)
    return torch.polar(torch.ones_like(phase), phase)


def radial_shell_index(shape_box: int, ndim: int, device: torch.device | str | None = None):
    """Integer shell index ``round(|k| * D)`` of every rfft-layout sample (2D or 3D)."""
    grid = freq_grid_2d(shape_box, device) if ndim == 2 else freq_grid_3d(shape_box, device)
    return torch.round(grid.norm(dim=-1) * shape_box).long()


def lowpass_filter(
    box: int, resolution_A: float, pixel_size_A: float, ndim: int = 3,
    width_shells: float = 2.0, device: torch.device | str | None = None,
) -> torch.Tensor:
    """Raised-cosine low-pass in the rfft layout, 1 below ``resolution_A``, 0 past it."""
    grid = freq_grid_2d(box, device) if ndim == 2 else freq_grid_3d(box, device)
    r = grid.norm(dim=-1) * box
    cutoff = box * pixel_size_A / resolution_A
    edge = (r - cutoff) / width_shells
    return torch.where(
        edge <= 0, torch.ones_like(r),
        torch.where(edge >= 1, torch.zeros_like(r), 0.5 * (1 + torch.cos(torch.pi * edge))),
    )


def soft_sphere_mask(
    box: int, radius_px: float, edge_px: float = 3.0, ndim: int = 3,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Real-space sphere of ``radius_px`` around the box centre with a cosine edge."""
    c = torch.arange(box, device=device, dtype=torch.float32) - box // 2
    grids = torch.meshgrid(*([c] * ndim), indexing="ij")
    r = torch.sqrt(torch.stack([g**2 for g in grids]).sum(0))
    edge = (r - radius_px) / max(edge_px, 1e-6)
    return torch.where(
        edge <= 0, torch.ones_like(r),
        torch.where(edge >= 1, torch.zeros_like(r), 0.5 * (1 + torch.cos(torch.pi * edge))),
    )
