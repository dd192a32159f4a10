"""Fourier-slice projection and back-projection, batched over volumes, particles and tilts.

Projection uses the central-slice theorem: the transform of ``image(u) = int V(R.T [u, z]) dz``
is the volume transform sampled on the plane ``R.T [kx, ky, 0]``. Volumes are zero-padded by
``pad`` and pre-divided by the trilinear-interpolation envelope (gridding correction), so
slices are sampled directly at the image's own rfft frequencies: no per-image FFT.

Back-projection inserts rfft-layout slices (and their Friedel mates) into a padded full
Fourier grid with trilinear weights; :func:`volumes_from_sums` turns the accumulated data and
weights into a real-space volume with a Wiener-like regularised division.

Why not ``torch-fourier-slice``: its ``extract_central_slices_rfft_3d`` samples one volume
at the volume's own (padded) grid, which would need an inverse FFT and crop per image;
here K class volumes are sampled in one ``grid_sample`` call at the image grid. The test
suite checks both against each other and against analytic projections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tomohet.physics.fourier import freq_grid_2d

__all__ = [
    "VolumeProjector", "Backprojector", "volumes_from_sums", "project_volumes", "scatter_plan",
    "crop_gridding_corrected",
]


def _sinc2_envelope(box: int, padded: int, device: torch.device) -> torch.Tensor:
    """Real-space envelope of trilinear interpolation on a grid of size ``padded``."""
    x = (torch.arange(box, device=device, dtype=torch.float32) - box // 2) / padded
    s = torch.sinc(x) ** 2
    return s[:, None, None] * s[None, :, None] * s[None, None, :]


def _slice_coordinates(rotations: torch.Tensor, box: int) -> torch.Tensor:
    """3D frequencies (cycles/pixel, order x,y,z) of rfft-layout image pixels.

    rotations (..., 3, 3) -> (..., D, D//2+1, 3): ``R.T @ [kx, ky, 0]``.
    """
    k2 = freq_grid_2d(box, device=rotations.device).to(rotations.dtype)  # (D, Dh, 2)
    # R.T @ [kx, ky, 0] = kx * R[0, :] + ky * R[1, :]
    r0 = rotations[..., 0, :][..., None, None, :]
    r1 = rotations[..., 1, :][..., None, None, :]
    return k2[..., 0:1] * r0 + k2[..., 1:2] * r1


class VolumeProjector:
    """Padded, gridding-corrected Fourier transforms of K volumes, ready for slicing.

    ``volumes`` (K, D, D, D) or (D, D, D) real, on any device.
    """

    def __init__(self, volumes: torch.Tensor, pad: int = 2) -> None:
        if volumes.ndim == 3:
            volumes = volumes[None]
        if volumes.ndim != 4 or len(set(volumes.shape[1:])) != 1:
            raise ValueError(f"volumes must be (K, D, D, D) cubes, got {tuple(volumes.shape)}")
        self.n_volumes = volumes.shape[0]
        self.box = volumes.shape[-1]
        self.pad = int(pad)
        p = self.box * self.pad
        self.padded = p
        dev = volumes.device
        corrected = volumes.float() / _sinc2_envelope(self.box, p, dev)
        lo = p // 2 - self.box // 2  # box centre D // 2 onto the padded origin P // 2
        big = torch.zeros((self.n_volumes, p, p, p), device=dev)
        big[:, lo : lo + self.box, lo : lo + self.box, lo : lo + self.box] = corrected
        ft = torch.fft.fftshift(
            torch.fft.fftn(torch.fft.ifftshift(big, dim=(-3, -2, -1)), dim=(-3, -2, -1)),
            dim=(-3, -2, -1),
        )
        del big
        # one (1, 2, P, P, P) grid per volume: real and imaginary parts as channels.
        # Sampling volumes separately is faster on CPU than one 2K-channel grid, whose
        # channel stride defeats the cache.
        self._grids = [torch.stack([f.real, f.imag])[None].contiguous() for f in ft]

    @property
    def device(self) -> torch.device:
        return self._grids[0].device

    def _sample_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """grid (1, ..., 3) normalised coordinates -> complex (K, ...)."""
        out = []
        for g in self._grids:
            s = F.grid_sample(g, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=True)[0]
            out.append(torch.complex(s[0], s[1]))
        return torch.stack(out)

    def sample(self, freqs: torch.Tensor, chunk_points: int = 2_000_000) -> torch.Tensor:
        """Volume transforms at arbitrary frequencies (cycles/pixel, order x, y, z).

        freqs (..., 3) -> complex (K, ...); points past Nyquist give 0. Used for 3D
        (subtomogram) comparisons, where the grid is a rotated 3D rfft grid.
        """
        shape = freqs.shape[:-1]
        pts = freqs.reshape(-1, 3).to(self.device, torch.float32)
        p, k = self.padded, self.n_volumes
        out = torch.empty((k, pts.shape[0]), dtype=torch.complex64, device=self.device)
        for start in range(0, pts.shape[0], chunk_points):
            q = pts[start : start + chunk_points]
            grid = (q * p + p // 2) / (p - 1) * 2 - 1
            sampled = self._sample_grid(grid[None, :, None, None])[:, :, 0, 0]  # (K, n)
            inside = q.norm(dim=-1) <= 0.5
            out[:, start : start + q.shape[0]] = sampled * inside
        return out.reshape(k, *shape)

    def slices(self, rotations: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Central slices of every volume at every rotation.

        rotations (..., 3, 3) -> complex (K, ..., D, D//2+1). Frequencies past Nyquist are 0.
        """
        batch_shape = rotations.shape[:-2]
        rot = rotations.reshape(-1, 3, 3).to(self.device, torch.float32)
        d, dh, k = self.box, self.box // 2 + 1, self.n_volumes
        out = torch.empty((k, rot.shape[0], d, dh), dtype=torch.complex64, device=self.device)
        radius = freq_grid_2d(d, device=self.device).norm(dim=-1) <= 0.5
        p = self.padded
        for start in range(0, rot.shape[0], chunk):
            r = rot[start : start + chunk]
            coords = _slice_coordinates(r, d) * p + p // 2  # padded-grid index units
            grid = coords / (p - 1) * 2 - 1
            out[:, start : start + r.shape[0]] = self._sample_grid(grid[None])
        out = out * radius
        return out.reshape(k, *batch_shape, d, dh)


def project_volumes(
    volumes: torch.Tensor, rotations: torch.Tensor, pad: int = 2
) -> torch.Tensor:
    """Real-space projections, convenience wrapper. (K, D, D, D), (N, 3, 3) -> (K, N, D, D)."""
    from tomohet.physics.fourier import ft_to_image

    proj = VolumeProjector(volumes, pad=pad)
    return ft_to_image(proj.slices(rotations), box=proj.box)


def _scatter_plan(
    slices: torch.Tensor, weights: torch.Tensor, rotations: torch.Tensor, box: int, padded: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Trilinear insertion targets of rfft-layout 2D slices (see :func:`scatter_plan`)."""
    k2 = freq_grid_2d(box, device=slices.device)
    coords = _slice_coordinates(rotations, box)  # (N, D, Dh, 3)
    return scatter_plan(coords, slices, weights, k2[..., 0] == 0, padded)


def scatter_plan(
    freqs: torch.Tensor, values: torch.Tensor, weights: torch.Tensor,
    on_half_plane: torch.Tensor, padded: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Trilinear insertion targets of Fourier samples and their Friedel mates.

    freqs (N, ..., 3) in cycles/pixel (x, y, z); values (N, ...) complex; weights (N, ...);
    on_half_plane (...) bool marks samples whose mate is also in the input (kx = 0), which
    then carry half weight. Returns flat indices into a fftshifted ``padded``^3 grid
    (8, M), corner weights (8, M), source item of each sample (M,), values (M,), weights (M,).
    """
    p, dev = padded, freqs.device
    inside = freqs.norm(dim=-1) < 0.5
    n_img = freqs.shape[0]
    shape = inside.shape
    img_idx = torch.arange(n_img, device=dev).reshape(-1, *([1] * (len(shape) - 1)))
    img_idx = img_idx.expand(shape)[inside]
    half = torch.where(on_half_plane, 0.5, 1.0).to(dev).expand(shape)[inside]
    c = freqs[inside] * p
    coords = torch.cat([c, -c], dim=0) + p // 2
    v = values[inside] * half
    vals = torch.cat([v, v.conj()], dim=0)
    w = weights[inside] * half
    wts = torch.cat([w, w], dim=0)
    img_idx = torch.cat([img_idx, img_idx], dim=0)
    base = coords.floor()
    frac = coords - base
    base_l = base.long()
    # per axis: weight of the lower/upper neighbour and whether each is on the grid
    w_axis = (1 - frac, frac)
    ok_axis = ((base_l >= 0) & (base_l < p), (base_l >= -1) & (base_l < p - 1))
    base_flat = (base_l[:, 2] * p + base_l[:, 1]) * p + base_l[:, 0]
    flats, cws = [], []
    for corner in range(8):
        ox, oy, oz = corner & 1, (corner >> 1) & 1, (corner >> 2) & 1
        cw = w_axis[ox][:, 0] * w_axis[oy][:, 1] * w_axis[oz][:, 2]
        ok = ok_axis[ox][:, 0] & ok_axis[oy][:, 1] & ok_axis[oz][:, 2]
        flats.append(torch.where(ok, base_flat + (oz * p + oy) * p + ox, 0))
        cws.append(cw * ok)
    return torch.stack(flats), torch.stack(cws), img_idx, vals, wts


@dataclass
class Backprojector:
    """Accumulates weighted Fourier slices into K padded 3D grids.

    ``data`` (K, P, P, P) complex and ``weight`` (K, P, P, P) real, fftshifted full grids.
    """

    box: int
    n_volumes: int = 1
    pad: int = 2
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        p = self.box * self.pad
        self.padded = p
        self.data = torch.zeros((self.n_volumes, p**3), dtype=torch.complex64, device=self.device)
        self.weight = torch.zeros((self.n_volumes, p**3), dtype=torch.float32, device=self.device)

    def insert(
        self,
        slices: torch.Tensor,
        weights: torch.Tensor,
        rotations: torch.Tensor,
        volume_weights: torch.Tensor | None = None,
        volume_index: torch.Tensor | None = None,
    ) -> None:
        """Insert rfft-layout slices.

        slices (N, D, Dh) complex: already multiplied by the conjugate transfer function;
        weights (N, D, Dh): the matching |transfer|^2 (times any per-image weight);
        rotations (N, 3, 3). Each slice goes to every volume scaled by
        ``volume_weights`` (K, N) (e.g. class posteriors), or only to volume
        ``volume_index`` (N,) (e.g. one subtomogram per particle). Frequencies past Nyquist
        are skipped.
        """
        dev = self.data.device
        plan = _scatter_plan(
            slices.to(dev), weights.to(dev, torch.float32), rotations.to(dev, torch.float32),
            self.box, self.padded,
        )
        self.insert_plan(plan, slices.shape[0], volume_weights, volume_index)

    def insert_plan(
        self,
        plan: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        n_items: int,
        volume_weights: torch.Tensor | None = None,
        volume_index: torch.Tensor | None = None,
        min_weight: float = 1e-4,
    ) -> None:
        """Scatter a :func:`scatter_plan` into the grids (see :meth:`insert`).

        Items whose ``volume_weights`` entry is below ``min_weight`` are skipped for that
        volume, so soft class assignments cost little more than hard ones.
        """
        dev = self.data.device
        flat, corner_w, img_idx, vals, wts = plan
        if volume_index is not None:
            p3 = self.padded**3
            target = flat + volume_index.to(dev)[img_idx][None] * p3  # (8, M)
            self.data.view(-1).index_add_(0, target.reshape(-1),
                                          (corner_w * vals[None]).reshape(-1))
            self.weight.view(-1).index_add_(0, target.reshape(-1),
                                            (corner_w * wts[None]).reshape(-1))
            return
        if volume_weights is None:
            for c in range(8):
                self.data[0].index_add_(0, flat[c], corner_w[c] * vals)
                self.weight[0].index_add_(0, flat[c], corner_w[c] * wts)
            if self.n_volumes > 1:
                raise ValueError("volume_weights or volume_index needed for several volumes")
            return
        # sparse: an item goes only to the volumes where its weight is non-negligible.
        # Pass r scatters every item's r-th such volume, so hard assignments (one volume
        # per item, e.g. a class in one half set) take one pass whatever the volume count.
        vw = volume_weights.to(dev, torch.float32)
        p3 = self.padded**3
        keep = vw > min_weight  # (V, N)
        counts = keep.sum(0)
        ranked = torch.argsort((~keep).to(torch.int8), dim=0, stable=True)  # kept first
        items = torch.arange(vw.shape[1], device=dev)
        for r in range(int(counts.max()) if counts.numel() else 0):
            has = counts > r
            vol = ranked[r]
            scale_item = vw[vol, items] * has
            sel = has[img_idx]
            idx = img_idx if bool(sel.all()) else img_idx[sel]
            fl, cw, va, wt = ((flat, corner_w, vals, wts) if idx is img_idx else
                              (flat[:, sel], corner_w[:, sel], vals[sel], wts[sel]))
            tgt = (fl + (vol[idx] * p3)[None]).reshape(-1)
            cw = cw * scale_item[idx][None]
            self.data.view(-1).index_add_(0, tgt, (cw * va[None]).reshape(-1))
            self.weight.view(-1).index_add_(0, tgt, (cw * wt[None]).reshape(-1))

    def add_friedel_mates(self) -> None:
        """In place: ``A(k) + conj(A(-k))`` (weights ``W(k) + W(-k)``) on every grid.

        For sums of samples inserted once each without their mates
        (:class:`tomohet.physics.compact.CompactSums`) this gives the sums of inserting
        every sample and its mate (:meth:`insert`). The mirror of the first plane along
        each axis (frequency -P/2) lies off the grid and counts as 0.
        """
        p = self.padded

        def mirror(x: torch.Tensor) -> torch.Tensor:
            g = x.reshape(self.n_volumes, p, p, p)
            # index i -> p - i (mod p) along each axis of the fftshifted grid
            m = torch.roll(torch.flip(g, dims=(-3, -2, -1)), shifts=(1, 1, 1), dims=(-3, -2, -1))
            m[:, 0], m[:, :, 0], m[:, :, :, 0] = 0, 0, 0
            return m.reshape(self.n_volumes, -1)

        self.data = self.data + mirror(self.data).conj()
        self.weight = self.weight + mirror(self.weight)

    def merge(self, other: Backprojector) -> None:
        """Add another accumulator's sums (e.g. from another process or batch)."""
        self.data += other.data.to(self.data.device)
        self.weight += other.weight.to(self.weight.device)

    def grids(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(data, weight), each (K, P, P, P): fftshifted full grids."""
        p = self.padded
        return (
            self.data.reshape(self.n_volumes, p, p, p),
            self.weight.reshape(self.n_volumes, p, p, p),
        )

    def rfft_grids(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(data, weight), each (K, P, P, P//2+1): the sums in the 3D rfft layout of the
        padded grid (origin first, as :func:`tomohet.physics.fourier.volume_to_ft`)."""
        p = self.padded
        return tuple(  # type: ignore[return-value]
            torch.fft.ifftshift(g, dim=(-3, -2, -1))[..., : p // 2 + 1].contiguous()
            for g in self.grids())


def volumes_from_sums(
    data: torch.Tensor,
    weight: torch.Tensor,
    box: int,
    wiener_constant: float | torch.Tensor = 1e-3,
) -> torch.Tensor:
    """Padded Fourier sums -> real volumes (K, D, D, D).

    ``F = data / (weight + c)``: ``c`` is a Wiener term, either a scalar relative to the mean
    weight or a per-voxel tensor (1/SNR) broadcastable to ``weight``. The result is
    cropped to ``box`` and gridding-corrected.
    """
    if data.ndim == 3:
        data, weight = data[None], weight[None]
    if isinstance(wiener_constant, torch.Tensor):
        reg = wiener_constant
    else:
        positive = weight[weight > 0]
        scale = positive.mean() if positive.numel() else torch.tensor(1.0)
        reg = wiener_constant * scale
    ft = data / (weight + reg)
    vol = torch.fft.fftshift(
        torch.fft.ifftn(torch.fft.ifftshift(ft, dim=(-3, -2, -1)), dim=(-3, -2, -1)),
        dim=(-3, -2, -1),
    ).real
    return crop_gridding_corrected(vol, box)


def crop_gridding_corrected(volumes: torch.Tensor, box: int) -> torch.Tensor:
    """Real-space volumes of a padded back-projection (..., P, P, P) -> (..., D, D, D).

    The central ``box`` (centre ``D // 2`` on the padded origin ``P // 2``, odd boxes too)
    divided by the real-space envelope of trilinear insertion on the padded grid (sinc^2
    per axis): the one gridding correction of every back-projection.
    """
    p = volumes.shape[-1]
    lo = p // 2 - box // 2  # (p - box) // 2 is one voxel off for odd boxes
    vol = volumes[..., lo : lo + box, lo : lo + box, lo : lo + box]
    # trilinear insertion convolves the grid: divide by its real-space envelope
    return vol / _sinc2_envelope(box, p, vol.device)
