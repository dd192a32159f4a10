"""Cutting particle boxes out of tilt images (nextPYP-style on-the-fly extraction).

Pure functions; pixel convention (RELION's): pixel ``i`` of an image has coordinate
``i``, and pixel ``box // 2`` of a box is its centre. A box of size ``B`` centred at the
(float) tilt-image position ``c`` holds ``box[j, i] = image(c_y - B//2 + j, c_x - B//2 + i)``.
It is cut at the integer position ``round(c)`` and moved by the remaining fraction
``c - round(c)`` (in [-0.5, 0.5] pixel) with a Fourier-space phase shift.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.physics.fourier import shift_phase_2d

__all__ = ["split_centres", "cut_windows", "subpixel_shift", "extract_boxes"]


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


def extract_boxes(image: np.ndarray, centre_px: np.ndarray, box: int,
                  fill: float | None = None, pad: int | None = None,
                  ) -> tuple[torch.Tensor, np.ndarray]:
    """Boxes (M, B, B) float32 centred at ``centre_px`` (M, 2) (x, y, float) of one 2D
    image (H, W), and crossed (M,) bool (boxes reaching outside the image, padded with
    ``fill``; default the image mean).

    Each box is cut with a margin of ``pad`` pixels (default ``max(4, B // 8)``) on every
    side, moved by its sub-pixel rest and cropped, so that the periodic wrap of the
    Fourier shift stays in the margin instead of folding one edge onto the other.
    """
    if fill is None:
        fill = float(np.mean(image, dtype=np.float64))
    m = max(4, box // 8) if pad is None else int(pad)
    corners, rest = split_centres(centre_px, box)
    h, w = image.shape[-2:]
    crossed = (corners < 0).any(-1) | (corners[:, 0] + box > w) | (corners[:, 1] + box > h)
    windows, _ = cut_windows(image, corners - m, box + 2 * m, fill)
    shifted = subpixel_shift(torch.from_numpy(windows), torch.from_numpy(-rest))
    return shifted[:, m:m + box, m:m + box].contiguous(), crossed
