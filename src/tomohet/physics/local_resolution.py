"""Local resolution of a pair of half maps (blocres / ResMap / RELION LocalRes style).

Around each point of a coarse grid of *window centres* (every ``step_px`` voxels, the box
centre among them) both half maps are cut out in a ``W``^3 box (``W`` = ``window_px``,
even), multiplied by a soft sphere (flat to ``W / 4``, cosine edge to ``W / 2``), and their
Fourier shell correlation is computed (shells ``round(|k| W)`` as in
:func:`tomohet.physics.fsc.fsc`: shell ``i`` is ``i / (W px)`` 1/A). The local resolution
is where that FSC first drops below ``threshold`` (0.143 as for half maps; linear
interpolation between shells, the rule of :func:`tomohet.physics.fsc.resolution_at`;
blocres also offers 0.5). All windows go through one batched FFT (in chunks of a bounded
size; the result does not depend on the chunk). The estimate lies between ``W`` px (first
shell) and 2 px (Nyquist).

The values at the centres are interpolated back to every voxel (trilinear, in frequency
1/A, normalised over the centres that were computed). With a ``mask`` (values in [0, 1],
inside = ``>= 0.5``) only centres within ``step_px`` (per axis) of an inside voxel are
computed, which are all the centres any inside voxel interpolates from; voxels outside
are ``fill`` (NaN by default), as are voxels whose windows all hold a NaN.

Window size: as blocres, a few times the resolution expected, at least 12 px
(:func:`default_window_px`: 3x the global half-map resolution inside the mask).
"""

from __future__ import annotations

import math

import torch

from tomohet.physics.fourier import hermitian_weights_3d, radial_shell_index, soft_sphere_mask
from tomohet.physics.fsc import fsc, resolution_at

__all__ = ["local_resolution", "windowed_fsc", "window_function", "default_window_px",
           "window_centres", "crossing_resolution"]

#: voxels of one float array of windows per chunk (64 MB): bounds memory, not results
_CHUNK_VOXELS = 1 << 24


def window_function(window_px: int, device: torch.device | str | None = None
                    ) -> torch.Tensor:
    """The soft spherical window (W, W, W) around voxel ``W // 2``: 1 up to radius
    ``W / 4``, cosine edge falling to 0 at ``W / 2``."""
    return soft_sphere_mask(window_px, window_px / 4, edge_px=window_px / 4, device=device)


def _even_window(window_px: float, box: int) -> int:
    w = 2 * math.ceil(float(window_px) / 2)
    return max(4, min(w, box - box % 2))


def default_window_px(half1: torch.Tensor, half2: torch.Tensor, pixel_size_A: float,
                      mask: torch.Tensor | None = None, factor: float = 3.0,
                      min_px: int = 12) -> int:
    """Window edge (px, even) for :func:`local_resolution`, as blocres chooses it:
    ``factor`` times the coarsest global half-map resolution (FSC 0.143 inside ``mask``)
    of the maps in ``half1``/``half2`` (..., D, D, D), at least ``min_px``, at most D."""
    h1, h2 = half1.float(), half2.float()
    if mask is not None:
        m = torch.as_tensor(mask, dtype=torch.float32, device=h1.device)
        h1, h2 = h1 * m, h2 * m
    curves = fsc(h1, h2).reshape(-1, h1.shape[-1] // 2 + 1).double().cpu().numpy()
    worst_A = max(resolution_at(c, pixel_size_A, 0.143) for c in curves)
    return _even_window(max(min_px, factor * worst_A / pixel_size_A), h1.shape[-1])


def window_centres(box: int, step_px: int) -> torch.Tensor:
    """Centre coordinates along one axis: ``c0 + j step`` covering 0..box-1 with
    ``c0 = (box // 2) % step``, so the box centre is one. -> (n,) long."""
    c0 = (box // 2) % step_px
    return torch.arange(c0, box, step_px)


def _shell_matrix(window_px: int, device: torch.device) -> torch.Tensor:
    """(W * W * (W//2+1), W//2+1): the Hermitian multiplicity of each rfft sample in its
    shell ``round(|k| W)`` (0 past Nyquist), so that ``x @ S`` sums ``x`` per shell."""
    n_shells = window_px // 2 + 1
    shell = radial_shell_index(window_px, 3, device).flatten()
    herm = hermitian_weights_3d(window_px, device).flatten()
    s = torch.zeros(len(shell), n_shells, device=device)
    keep = shell < n_shells
    rows = torch.nonzero(keep).squeeze(1)
    s[rows, shell[keep]] = herm[keep]
    return s


def windowed_fsc(half1: torch.Tensor, half2: torch.Tensor, centres: torch.Tensor,
                 window_px: int, chunk: int | None = None) -> torch.Tensor:
    """FSC of the two half maps in the soft window (:func:`window_function`) around each
    centre. half1, half2 (D, D, D); centres (N, 3) voxel indices (z, y, x); the box is
    zero outside. -> (N, W//2 + 1) per shell of the W box (0 where a window is empty).

    The FSC needs no phase origin (``F1 F2*`` and ``|F|^2`` do not change under a shift),
    so the windows are transformed as cut; shell sums are one matrix product."""
    if half1.ndim != 3 or half1.shape != half2.shape:
        raise ValueError(f"half maps must be two (D, D, D) volumes, got {tuple(half1.shape)}"
                         f" and {tuple(half2.shape)}")
    w = int(window_px)
    if w % 2 or w < 4:
        raise ValueError(f"window_px must be even and >= 4, got {window_px}")
    p = w // 2
    win = window_function(w, half1.device)
    shells = _shell_matrix(w, half1.device)
    views = [torch.nn.functional.pad(h.float(), (p, p, p, p, p, p))
             .unfold(0, w, 1).unfold(1, w, 1).unfold(2, w, 1) for h in (half1, half2)]
    c = centres.long().to(half1.device)
    size = chunk or max(1, _CHUNK_VOXELS // w**3)
    out = []
    for i in range(0, len(c), size):
        z, y, x = c[i:i + size].unbind(1)
        f1, f2 = (torch.fft.rfftn(v[z, y, x] * win, dim=(-3, -2, -1)).flatten(1)
                  for v in views)
        num = (f1.real * f2.real + f1.imag * f2.imag) @ shells
        p1 = (f1.real.square() + f1.imag.square()) @ shells
        p2 = (f2.real.square() + f2.imag.square()) @ shells
        out.append(num / torch.sqrt(p1 * p2).clamp_min(1e-30))
    return torch.cat(out) if out else torch.zeros((0, w // 2 + 1), device=half1.device)


def crossing_resolution(curves: torch.Tensor, threshold: torch.Tensor, window_px: int,
                        pixel_size_A: float) -> torch.Tensor:
    """Resolution (A) where each curve (N, W//2+1) first drops below ``threshold``
    (W//2+1,), shell 0 ignored, linearly interpolated in frequency; W px when shell 1 is
    already below, 2 px (Nyquist) when none is. -> (N,) float64."""
    c = curves.double()
    t = threshold.to(c)
    n, n_shells = c.shape
    freqs = torch.arange(n_shells, dtype=torch.float64, device=c.device) / (
        window_px * pixel_size_A)
    below = c[:, 1:] < t[1:]
    any_below = below.any(1)
    i = below.double().argmax(1) + 1  # first shell below
    prev = (i - 1).clamp_min(1)
    rows = torch.arange(n, device=c.device)
    c0, c1 = c[rows, prev], c[rows, i]
    frac = ((c0 - t[prev]) / (c0 - c1 - (t[prev] - t[i])).clamp_min(1e-12)).clamp(0, 1)
    f = freqs[prev] + frac * (freqs[i] - freqs[prev])
    f = torch.where(i == 1, freqs[1], f)
    f = torch.where(any_below, f, torch.full_like(f, 1 / (2 * pixel_size_A)))
    return 1 / f


def _interp_matrix(box: int, nodes: torch.Tensor) -> torch.Tensor:
    """(box, n) linear interpolation weights from the nodes to every voxel, clamped."""
    n = len(nodes)
    step = float(nodes[1] - nodes[0]) if n > 1 else 1.0
    u = ((torch.arange(box, dtype=torch.float64) - float(nodes[0])) / step).clamp(0, n - 1)
    lo = u.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    a = torch.zeros(box, n, dtype=torch.float64)
    rows = torch.arange(box)
    a[rows, lo] += 1 - (u - lo)
    a[rows, hi] += u - lo
    return a


def _upsample(values: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``sum_ijk a[z, i] a[y, j] a[x, k] values[i, j, k]`` as three matrix products."""
    t = torch.tensordot(values, a, dims=([2], [1]))  # (i, j, x)
    t = torch.tensordot(t, a, dims=([1], [1]))  # (i, x, y)
    t = torch.tensordot(t, a, dims=([0], [1]))  # (x, y, z)
    return t.permute(2, 1, 0)


def local_resolution(half1: torch.Tensor, half2: torch.Tensor, pixel_size_A: float,
                     window_A: float | None = None, step_px: int | None = None,
                     threshold: float = 0.143, mask: torch.Tensor | None = None,
                     fill: float = float("nan"),
                     chunk: int | None = None) -> torch.Tensor:
    """Local resolution map (A) of half maps (..., D, D, D) -> (..., D, D, D) float32.

    pixel_size_A: voxel size (A). window_A: window edge (A; rounded up to an even number
    of voxels, 4..D); None -> :func:`default_window_px` (3x the coarsest global resolution
    of the maps given, >= 12 px; one window for all maps so their values compare).
    step_px: spacing of the window centres (default ``W // 4``). threshold: FSC threshold
    (a sigma criterion, van Heel & Schatz 2005, is not offered: with the ~26 Fourier
    voxels of a 12-px window's first shell it asks FSC > 0.9 there). mask (D, D, D) in
    [0, 1]: inside is ``>= 0.5``, outside voxels get ``fill``. chunk: windows per FFT
    batch (memory only). See the module doc for the method.
    """
    if half1.shape != half2.shape or half1.ndim < 3 or len(set(half1.shape[-3:])) != 1:
        raise ValueError(f"half maps must be (..., D, D, D) of one shape, got "
                         f"{tuple(half1.shape)} and {tuple(half2.shape)}")
    if pixel_size_A <= 0:
        raise ValueError(f"pixel_size_A must be positive, got {pixel_size_A}")
    box = half1.shape[-1]
    dev = half1.device
    inside = (torch.ones((box,) * 3, dtype=torch.bool, device=dev) if mask is None else
              torch.as_tensor(mask, device=dev).float() >= 0.5)
    if inside.shape != (box,) * 3:
        raise ValueError(f"mask must be ({box}, {box}, {box}), got {tuple(inside.shape)}")
    w = (_even_window(window_A / pixel_size_A, box) if window_A is not None else
         default_window_px(half1, half2, pixel_size_A, mask))
    s = max(1, int(step_px) if step_px is not None else w // 4)
    nodes = window_centres(box, s).to(dev)
    # centres within s (per axis) of an inside voxel: all any inside voxel interpolates from
    near = inside.float()[None, None]
    for k in ((2 * s + 1, 1, 1), (1, 2 * s + 1, 1), (1, 1, 2 * s + 1)):  # separable max
        near = torch.nn.functional.max_pool3d(near, k, stride=1,
                                              padding=tuple(x // 2 for x in k))
    near = near[0, 0] > 0
    grid = near[nodes][:, nodes][:, :, nodes]
    centres = torch.stack(torch.meshgrid(nodes, nodes, nodes, indexing="ij"), -1)[grid]
    t = torch.full((w // 2 + 1,), float(threshold), dtype=torch.float64, device=dev)
    a = _interp_matrix(box, nodes).to(dev)
    lead = half1.shape[:-3]
    h1 = half1.reshape(-1, box, box, box)
    h2 = half2.reshape(-1, box, box, box)
    out = []
    for v1, v2 in zip(h1, h2, strict=True):
        curves = windowed_fsc(v1, v2, centres, w, chunk)
        res = crossing_resolution(curves, t, w, pixel_size_A)
        finite = torch.isfinite(curves).all(1)  # a NaN in the maps is not "Nyquist"
        valid = grid.clone()
        valid[grid] = finite
        freq = torch.zeros(grid.shape, dtype=torch.float64, device=dev)
        freq[valid] = 1 / res[finite]
        num, den = _upsample(freq, a), _upsample(valid.double(), a)
        ok = inside & (den > 1e-9)
        vol = torch.full((box,) * 3, float(fill), dtype=torch.float64, device=dev)
        vol[ok] = den[ok] / num[ok]
        out.append(vol.float())
    return torch.stack(out).reshape(*lead, box, box, box)
