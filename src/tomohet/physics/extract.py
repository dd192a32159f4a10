"""Cutting particle boxes out of tilt images (nextPYP-style on-the-fly extraction).

Pure functions; pixel convention (RELION's): pixel ``i`` of an image has coordinate
``i``, and pixel ``box // 2`` of a box is its centre. A box of size ``B`` centred at the
(float) tilt-image position ``c`` holds ``box[j, i] = image(c_y - B//2 + j, c_x - B//2 + i)``.
It is cut at the integer position ``round(c)`` and moved by the remaining fraction
``c - round(c)`` (in [-0.5, 0.5] pixel) with a Fourier-space phase shift.

Boxes whose pixel is ``scale`` image pixels (binned particles cut from unbinned tilt
series) hold ``box[j, i] = image(c_y + (j - B//2) * scale, c_x + (i - B//2) * scale)`` of
the image low-passed to the box's Nyquist frequency (Fourier cropping): the window's
transform, restricted to ``|k| <= 0.5 / scale`` cycles per image pixel, is evaluated at
the box's pixel positions (band-limited interpolation, separable in x and y), which
also applies the sub-pixel shift.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.physics.fourier import shift_phase_2d

__all__ = ["split_centres", "cut_windows", "subpixel_shift", "resample_boxes", "box_crosses",
           "extract_boxes"]


def split_centres(centre_px: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, 2) float (x, y) box centres -> integer window corners (M, 2) and the fractional
    rest (M, 2) in [-0.5, 0.5]: ``centre = corner + box // 2 + rest``."""
    c = np.asarray(centre_px, dtype=np.float64)
    r = np.floor(c + 0.5)
    return (r - box // 2).astype(np.int64), c - r


def cut_windows(image: np.ndarray, corners: np.ndarray, box: int,
                fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer windows of one 2D image (H, W) (a memory map is read only inside them).

    Args:
        image: (H, W) array.
        corners: (M, 2) int (x, y) of each window's first pixel.
        box: window size B.
        fill: value of window pixels that lie outside the image.

    Returns:
        windows (M, B, B) float32 and crossed (M,) bool: True where a window reaches
        outside the image (those pixels hold ``fill``).
    """
    h, w = image.shape[-2:]
    corners = np.asarray(corners, dtype=np.int64).reshape(-1, 2)
    out = np.full((len(corners), box, box), fill, dtype=np.float32)
    crossed = np.zeros(len(corners), dtype=bool)
    for m, (x0, y0) in enumerate(corners):
        xa, xb = max(x0, 0), min(x0 + box, w)
        ya, yb = max(y0, 0), min(y0 + box, h)
        crossed[m] = (xa, ya, xb, yb) != (x0, y0, x0 + box, y0 + box)
        if xa < xb and ya < yb:
            out[m, ya - y0:yb - y0, xa - x0:xb - x0] = image[ya:yb, xa:xb]
    return out, crossed


def subpixel_shift(boxes: torch.Tensor, shift_px: torch.Tensor) -> torch.Tensor:
    """Move the content of real images (M, B, B) by ``shift_px`` (M, 2) (x, y) pixels
    (periodic, exact for band-limited content) -> (M, B, B)."""
    b = boxes.shape[-1]
    if boxes.shape[-2] != b:
        raise ValueError(f"square boxes expected, got {tuple(boxes.shape[-2:])}")
    ft = torch.fft.rfft2(boxes.to(torch.float64))
    ft = ft * shift_phase_2d(shift_px.to(torch.float64), b)
    return torch.fft.irfft2(ft, s=(b, b)).to(boxes.dtype)


def resample_boxes(windows: torch.Tensor, offset_px: torch.Tensor, box: int,
                   scale: float) -> torch.Tensor:
    """Band-limited resampling of square windows onto boxes of coarser (or finer) pixels.

    Args:
        windows: (M, S, S) real.
        offset_px: (M, 2) (x, y) window coordinates of each box centre (pixel ``box // 2``).
        box: B.
        scale: box pixel size in window pixels.

    Returns:
        (M, B, B) float32: ``out[m, j, i]`` is the window's trigonometric interpolant, with
        frequencies above ``0.5 / scale`` cycles/pixel removed, at
        ``offset + ((i, j) - B // 2) * scale``.
    """
    s = windows.shape[-1]
    ft = torch.fft.fft2(windows.to(torch.float64))
    k = torch.fft.fftfreq(s, dtype=torch.float64)
    band = k.abs() <= 0.5 / scale + 1e-9
    kb = k[band]
    ftb = ft[:, band][:, :, band]
    grid = (torch.arange(box, dtype=torch.float64) - box // 2) * scale
    off = offset_px.to(torch.float64)
    ex = torch.exp(2j * torch.pi * (off[:, 0, None] + grid)[..., None] * kb)  # (M, B, K)
    ey = torch.exp(2j * torch.pi * (off[:, 1, None] + grid)[..., None] * kb)
    out = ey @ ftb @ ex.transpose(-1, -2)
    return (out.real / (s * s)).to(torch.float32)


def box_crosses(centre_px: np.ndarray, box: int, size_wh: tuple[int, int],
                scale: float = 1.0) -> np.ndarray:
    """(M,) bool: the box centred at ``centre_px`` (M, 2) needs pixels outside an image of
    ``size_wh`` (W, H) (at ``scale`` 1: its integer window; else its footprint)."""
    c = np.asarray(centre_px, dtype=np.float64).reshape(-1, 2)
    size = np.asarray(size_wh, dtype=np.float64)
    if scale == 1.0:
        lo = split_centres(c, box)[0]
        return np.asarray((lo < 0).any(-1) | (lo + box > size).any(-1))
    lo = np.floor(c - (box // 2) * scale)
    hi = np.ceil(c + (box - 1 - box // 2) * scale)
    return np.asarray((lo < 0).any(-1) | (hi > size - 1).any(-1))


def extract_boxes(image: np.ndarray, centre_px: np.ndarray, box: int,
                  fill: float | None = None, pad: int | None = None, scale: float = 1.0,
                  ) -> tuple[torch.Tensor, np.ndarray]:
    """Boxes (M, B, B) float32 centred at ``centre_px`` (M, 2) (x, y, float) of one 2D
    image (H, W), and crossed (M,) bool (boxes reaching outside the image, padded with
    ``fill``; default the image mean). ``scale``: box pixel in image pixels.

    Each box is cut with a margin of ``pad`` pixels (default ``max(4, B // 8)``, in box
    pixels) on every side, moved by its sub-pixel rest (resampled when ``scale != 1``)
    and cropped, so that the periodic wrap of the Fourier shift stays in the margin
    instead of folding one edge onto the other.
    """
    if fill is None:
        fill = float(np.mean(image, dtype=np.float64))
    m = max(4, box // 8) if pad is None else int(pad)
    h, w = image.shape[-2:]
    centre = np.asarray(centre_px, dtype=np.float64).reshape(-1, 2)
    crossed = box_crosses(centre, box, (w, h), scale)
    if scale == 1.0:
        corners, rest = split_centres(centre, box)
        windows, _ = cut_windows(image, corners - m, box + 2 * m, fill)
        shifted = subpixel_shift(torch.from_numpy(windows), torch.from_numpy(-rest))
        return shifted[:, m:m + box, m:m + box].contiguous(), crossed
    size = int(np.ceil((box + 2 * m) * scale))
    size += size % 2
    corners = np.floor(centre).astype(np.int64) - size // 2
    windows, _ = cut_windows(image, corners, size, fill)
    return resample_boxes(torch.from_numpy(windows), torch.from_numpy(centre - corners),
                          box, scale), crossed
