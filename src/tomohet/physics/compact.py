"""The EM hot path on the pixels that carry signal only (issue 14).

A tilt image's rfft pixels outside its dose mask, its resolution limit or the Nyquist
circle contribute nothing to the likelihood or to the reconstruction, yet the dense path
(:func:`tomohet.physics.forward.model_transforms`, :func:`~tomohet.physics.forward.
log_likelihoods`, :func:`tomohet.physics.reconstruction.backproject`) projects and
back-projects every pixel, inserts each one twice (itself and its Friedel mate) and
computes the trilinear plan again for the back-projection.

Here the kept pixels of a batch are gathered once into flat arrays
(:func:`compact_batch`), with their rotated frequencies and trilinear corner indices and
weights on the padded grid, computed once per image per pass: the K class volumes are
sampled there (``grid_sample``) and the back-projection into all 2K half-set volumes
scatters with the one plan. Each pixel is inserted once,
without its mate, into float sums (:class:`CompactSums`); the pass ends with
:meth:`~tomohet.physics.projection.Backprojector.add_friedel_mates`, which adds every
mate at once (``A + conj(A(-k))``) -- the same sums as the dense insertion.
Only tilt geometry without local pose search takes this path; the dense one remains the
reference (``EMConfig.compact = False``) and is tested equal to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tomohet.physics.forward import NoiseModel, PreparedBatch
from tomohet.physics.fourier import freq_grid_2d
from tomohet.physics.projection import Backprojector, VolumeProjector

__all__ = ["CompactBatch", "CompactSums", "compact_batch", "project_compact",
           "log_likelihoods_compact", "accumulate_noise_compact", "insert_compact",
           "trilinear_corners"]


@dataclass
class CompactBatch:
    """The kept pixels of a prepared tilt batch, flat (M = number of kept pixels).

    image (M,): image index ``b * T + t``; particle (M,): ``b``; pixel (M,): flat index in
    the (D, D//2+1) rfft image; data, transfer (M,) complex; premult_power (M,); group (M,)
    noise group; flat (8, M) corner indices into the fftshifted padded grid and
    corner_w (8, M) trilinear weights (0 for corners off the grid); half (M,) 0.5 on the
    kx = 0 column (its mate is in the input too), 0 where the pixel is not inserted
    (rotated frequency at or past Nyquist, as in the dense path), else 1. grid
    (1, M, 1, 1, 3): the same points as ``grid_sample`` coordinates (align_corners).
    n_particles, n_tilts: B, T.
    """

    image: torch.Tensor
    particle: torch.Tensor
    pixel: torch.Tensor
    data: torch.Tensor
    transfer: torch.Tensor
    premult_power: torch.Tensor
    group: torch.Tensor
    flat: torch.Tensor
    corner_w: torch.Tensor
    half: torch.Tensor
    grid: torch.Tensor
    n_particles: int
    n_tilts: int


def trilinear_corners(coords: torch.Tensor, padded: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Corner flat indices (8, M) and weights (8, M) of points (M, 3) in padded-grid index
    units (x, y, z) on a ``padded``^3 grid (flat index ``(z * P + y) * P + x``); corners
    off the grid get index 0 and weight 0."""
    p = padded
    base = coords.floor()
    frac = coords - base
    b = base.int()
    # per axis: index and weight of the lower and upper neighbour; a neighbour off the
    # grid gets weight 0 and a clamped (harmless) index
    idx = [[(b[:, a] + o).clamp(0, p - 1) for o in (0, 1)] for a in range(3)]
    wts = [[(1 - frac[:, a]) * ((b[:, a] >= 0) & (b[:, a] < p)),
            frac[:, a] * ((b[:, a] >= -1) & (b[:, a] < p - 1))] for a in range(3)]
    zy_i = [idx[2][oz] * (p * p) + idx[1][oy] * p for oz in (0, 1) for oy in (0, 1)]
    zy_w = [wts[2][oz] * wts[1][oy] for oz in (0, 1) for oy in (0, 1)]
    # corner order: x fastest, then y, then z
    flat = torch.stack([zy + idx[0][ox] for zy in zy_i for ox in (0, 1)])
    corner_w = torch.stack([zw * wts[0][ox] for zw in zy_w for ox in (0, 1)])
    return flat, corner_w


def compact_batch(prep: PreparedBatch, padded: int, n_groups: int,
                  rotation: torch.Tensor | None = None) -> CompactBatch:
    """Gather the pixels of ``prep`` inside its mask and the Nyquist circle (tilt geometry).

    ``rotation`` (B, T, 3, 3) overrides ``prep.rotation``; ``n_groups`` clamps the noise
    groups as :class:`~tomohet.physics.forward.NoiseModel` does."""
    if prep.geometry != "tilt":
        raise ValueError("compact_batch handles tilt geometry only")
    b, t, d, dh = prep.mask.shape
    dev = prep.data.device
    k2 = freq_grid_2d(d, device=dev)  # (D, Dh, 2)
    radius = k2.norm(dim=-1)
    keep = prep.mask & (radius <= 0.5)  # the projection's support (slices() zeroes past it)
    image, pixel = keep.reshape(b * t, d * dh).nonzero(as_tuple=True)
    rot = (prep.rotation if rotation is None else rotation).reshape(b * t, 3, 3)
    rot = rot.to(dev, torch.float32)[image]  # (M, 3, 3)
    kxy = k2.reshape(-1, 2)[pixel]  # (M, 2)
    # R.T @ [kx, ky, 0] in padded-grid index units, as VolumeProjector.slices samples it
    k3 = kxy[:, 0:1] * rot[:, 0, :] + kxy[:, 1:2] * rot[:, 1, :]
    coords = k3 * padded + padded // 2  # padded-grid index units
    flat, corner_w = trilinear_corners(coords, padded)
    # inserted: inside Nyquist, by the rotated frequency's norm as the dense path decides
    half = torch.where(kxy[:, 0] == 0, 0.5, 1.0) * (k3.norm(dim=-1) < 0.5)
    flat_img = (image, pixel)
    return CompactBatch(
        image=image, particle=torch.div(image, t, rounding_mode="floor"), pixel=pixel,
        data=prep.data.reshape(b * t, -1)[flat_img],
        transfer=prep.transfer.reshape(b * t, -1)[flat_img],
        premult_power=prep.premult_power.expand(prep.mask.shape).reshape(b * t, -1)[flat_img],
        group=prep.group.reshape(-1).clamp_max(n_groups - 1)[image],
        flat=flat, corner_w=corner_w, half=half.float(),
        grid=(coords / (padded - 1) * 2 - 1)[None, :, None, None], n_particles=b, n_tilts=t)


def project_compact(projector: VolumeProjector, cb: CompactBatch) -> torch.Tensor:
    """Model transforms of every volume at the kept pixels -> complex (K, M), sampled as
    :meth:`~tomohet.physics.projection.VolumeProjector.slices` samples them (its
    ``grid_sample`` on CPU beats gathering the 8 corners from the plan by ~1.6x)."""
    if cb.grid.shape[1] == 0:
        return torch.zeros((projector.n_volumes, 0), dtype=torch.complex64,
                           device=cb.grid.device)
    return projector._sample_grid(cb.grid)[:, :, 0, 0]


def _inverse_noise(cb: CompactBatch, noise: NoiseModel) -> torch.Tensor:
    """``1 / (sigma2(group, shell) * M^2)`` per kept pixel (M,)."""
    shell = noise.shell.reshape(-1)[cb.pixel]
    return 1.0 / (noise.sigma2[cb.group, shell] * cb.premult_power.clamp_min(1e-6))


def log_likelihoods_compact(cb: CompactBatch, model: torch.Tensor, noise: NoiseModel,
                            per_tilt: bool = False) -> torch.Tensor:
    """:func:`~tomohet.physics.forward.log_likelihoods` on the kept pixels: model (K, M)
    -> (B, K), or (B, T, K) with ``per_tilt``. Sums are accumulated in float64."""
    inv = _inverse_noise(cb, noise) * noise.herm.reshape(-1)[cb.pixel] / 2
    # Re(X^* H V) - |H V|^2 / 2 = Re(a V) - b |V|^2 with per-pixel a, b (shared by K)
    a = cb.data.conj() * cb.transfer * inv
    b = 0.5 * (cb.transfer.real**2 + cb.transfer.imag**2) * inv
    v = torch.view_as_real(model)  # (K, M, 2)
    ll = (v[..., 0] * a.real - v[..., 1] * a.imag - b * (v[..., 0]**2 + v[..., 1]**2))
    ll = ll.double()  # (K, M)
    k = model.shape[0]
    n_img = cb.n_particles * cb.n_tilts
    # pixels are ordered by image: per-image sums from the running sum at image ends
    ends = torch.bincount(cb.image, minlength=n_img).cumsum(0)
    run = torch.nn.functional.pad(ll.cumsum(1), (1, 0))
    per_img = (run[:, ends] - run[:, torch.nn.functional.pad(ends[:-1], (1, 0))])
    per_img = per_img.reshape(k, cb.n_particles, cb.n_tilts).float()
    if per_tilt:
        return per_img.permute(1, 2, 0)
    return per_img.sum(-1).T


def accumulate_noise_compact(noise: NoiseModel, cb: CompactBatch,
                             residual_power: torch.Tensor) -> None:
    """:meth:`~tomohet.physics.forward.NoiseModel.accumulate` on the kept pixels:
    residual_power (M,) = ``|X - H V|^2``."""
    shell = noise.shell.reshape(-1)[cb.pixel]
    w = noise.herm.reshape(-1)[cb.pixel]
    flat = cb.group * noise.n_shells + shell
    noise._sum.view(-1).index_add_(0, flat, residual_power / cb.premult_power.clamp_min(1e-6) * w)
    noise._count.view(-1).index_add_(0, flat, w)


class CompactSums:
    """Back-projection sums of compact batches over V volumes, real part, imaginary part
    and weight in separate float grids (a float scatter is several times faster than a
    complex one on CPU). :meth:`backprojector` turns them into a
    :class:`~tomohet.physics.projection.Backprojector` holding the sums of the dense
    insertion (every sample and its Friedel mate)."""

    def __init__(self, box: int, n_volumes: int, pad: int = 2,
                 device: torch.device | str = "cpu") -> None:
        self.box, self.n_volumes, self.pad, self.device = box, n_volumes, pad, device
        self.padded = box * pad
        size = n_volumes * self.padded**3
        self.re = torch.zeros(size, device=device)
        self.im = torch.zeros(size, device=device)
        self.weight = torch.zeros(size, device=device)

    def backprojector(self) -> Backprojector:
        bp = Backprojector(self.box, self.n_volumes, self.pad, self.device)
        bp.data = torch.complex(self.re, self.im).reshape(self.n_volumes, -1)
        bp.weight = self.weight.reshape(self.n_volumes, -1).clone()
        bp.add_friedel_mates()
        return bp


def insert_compact(sums: CompactSums, cb: CompactBatch, class_weights: torch.Tensor,
                   noise: NoiseModel | None = None, min_weight: float = 1e-4) -> None:
    """Insert the kept pixels once each (no Friedel mates) into ``sums``, every particle
    into the volumes of ``class_weights`` (V, B) where its weight exceeds ``min_weight``
    (as :meth:`~tomohet.physics.projection.Backprojector.insert_plan`)."""
    w = cb.half / cb.premult_power.clamp_min(1e-6)
    if noise is not None:
        shell = noise.shell.reshape(-1)[cb.pixel]
        w = w / noise.sigma2[cb.group, shell]
    vals = cb.transfer.conj() * cb.data * w
    parts = (vals.real.contiguous(), vals.imag.contiguous(),
             (cb.transfer.real**2 + cb.transfer.imag**2) * w)
    targets = (sums.re, sums.im, sums.weight)
    vw = class_weights.to(cb.data.device, torch.float32)
    p3 = sums.padded**3
    keep = vw > min_weight  # (V, B)
    counts = keep.sum(0)
    ranked = torch.argsort((~keep).to(torch.int8), dim=0, stable=True)  # kept first
    items = torch.arange(vw.shape[1], device=vw.device)
    # rank r scatters every particle's r-th volume: one pass for hard assignments
    for r in range(int(counts.max()) if counts.numel() else 0):
        has = counts > r
        vol, scale = ranked[r], vw[ranked[r], items] * has
        sel = None if bool(has.all()) else has[cb.particle].nonzero(as_tuple=True)[0]
        part = cb.particle if sel is None else cb.particle[sel]
        flat = cb.flat if sel is None else cb.flat[:, sel]
        cw = (cb.corner_w if sel is None else cb.corner_w[:, sel]) * scale[part][None]
        tgt = (flat + (vol[part] * p3).to(flat.dtype)[None]).reshape(-1)
        for src, dst in zip(parts, targets, strict=True):
            v = src if sel is None else src[sel]
            dst.index_add_(0, tgt, (cw * v[None]).reshape(-1))
