"""``flow``: TomoFlow-style dense 3D displacement fields as heterogeneity features.

For every particle, in the reference frame (:func:`~tomohet.methods.linear.reference.
iter_reference`): its data ``Y_n = sum H^* X`` (the subtomogram filtered by its own wedge
and CTF) and the global average filtered by *the same* wedge, ``W_n mu``; both band-limited
(``lowpass_A``), on the working box that holds the band, normalised inside the mask.
A smooth displacement field ``u_n`` (B-spline-like: trilinear upsampling of control
points) is fitted so that the warped reference matches the particle,

    sum_x m(x) (P_n(x) - g_n R_n(x + u_n(x)))^2 + alpha |grad u_n|^2 + beta |u_n|^2,

coarse to fine (``levels`` control grids, each initialised from the previous), by Adam
in torch, batched over particles (Adam is per-parameter, so a particle's field depends on
its own data only: no batch-size or order effects). The fields at the finest control
grid (in Angstrom, weighted by the average's density there) are the features -> PCA ->
latent; clusters; maps of the average warped along each component (-2..+2 SD).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tomohet.io.atomic import atomic_write_text
from tomohet.methods.base import (
    HeterogeneityMethod,
    ParticleSet,
    default_mask,
    register,
    resolve_device,
)
from tomohet.methods.linear.reference import (
    crop_rfft,
    global_average,
    iter_reference,
    padded_to_volume,
    subsample_rfft,
    working_box,
)
from tomohet.methods.nma.method import check_weights
from tomohet.physics.fourier import ft_to_volume, lowpass_filter

__all__ = ["Flow", "warp", "upsample_field"]


def upsample_field(ctrl: torch.Tensor, size: int) -> torch.Tensor:
    """Control-point fields (B, 3, g, g, g) -> dense (B, 3, s, s, s), trilinear."""
    return F.interpolate(ctrl, size=(size,) * 3, mode="trilinear", align_corners=True)


def warp(volumes: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """``V(x + u(x))``: volumes (B, D, D, D) indexed [z, y, x], fields (B, 3, D, D, D) in
    voxels, components (x, y, z) -> (B, D, D, D) (trilinear; zero outside the box)."""
    d = volumes.shape[-1]
    ax = torch.arange(d, dtype=volumes.dtype, device=volumes.device)
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    pos = torch.stack([x, y, z])[None] + field  # (B, 3, D, D, D) (x, y, z)
    grid = (2 * pos / (d - 1) - 1).permute(0, 2, 3, 4, 1)  # (B, D, D, D, 3) (x, y, z)
    return F.grid_sample(volumes[:, None], grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)[:, 0]


def _grad_penalty(u: torch.Tensor) -> torch.Tensor:
    """Sum of squared finite differences of fields (B, 3, g, g, g) -> (B,)."""
    return sum(((u.diff(dim=a) ** 2).flatten(1).sum(1) for a in (2, 3, 4)),
               torch.zeros(u.shape[0], device=u.device))


@register
class Flow(HeterogeneityMethod):
    """Dense displacement fields against the wedge-filtered average (TomoFlow style).

    ``lowpass_A`` (None: 4 pixels) sets the detail matched and the working box;
    ``levels`` the control grids, coarse to fine; ``n_iter`` Adam steps per level
    (learning rate ``lr`` voxels); ``smoothness`` (alpha) and ``ridge`` (beta) the
    regularisation relative to the data term; ``n_components`` principal components.
    """

    name = "flow"
    kind = "continuous"
    input_kind = "either"
    bench_params = {"cluster": None}

    def __init__(self, n_components: int = 4, lowpass_A: float | None = None,
                 levels: tuple[int, ...] = (2, 3, 5), n_iter: int = 30, lr: float = 0.3,
                 smoothness: float = 0.01, ridge: float = 0.001,
                 mask_radius_A: float | None = None,
                 cluster: str | None = "gmm", n_clusters: int | None = None,
                 max_clusters: int = 8, batch_size: int = 32, device: str | None = None,
                 progress: bool = True, random_state: int | None = None) -> None:
        self.n_components = n_components
        self.lowpass_A = lowpass_A
        self.levels = levels
        self.n_iter = n_iter
        self.lr = lr
        self.smoothness = smoothness
        self.ridge = ridge
        self.mask_radius_A = mask_radius_A
        self.cluster = cluster
        self.n_clusters = n_clusters
        self.max_clusters = max_clusters
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.random_state = random_state

    # ------------------------------------------------------------------ pieces
    def _pairs(self, y: torch.Tensor, w: torch.Tensor, mu: torch.Tensor, filt: torch.Tensor,
               box: int, small: int, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Particle and same-wedge reference on the working box, normalised in the mask."""
        ys, ws = subsample_rfft(y), subsample_rfft(w)
        part = ft_to_volume(crop_rfft(ys * filt, box, small), small)
        ref = ft_to_volume(crop_rfft(ws * subsample_rfft(mu)[None] * filt, box, small), small)
        out = []
        for v in (part, ref):
            m = (v * mask).sum((1, 2, 3), keepdim=True) / mask.sum()
            sd = (((v - m) * mask) ** 2).sum((1, 2, 3), keepdim=True) / mask.sum()
            out.append((v - m) / sd.sqrt().clamp_min(1e-12))
        return out[0], out[1]

    def _fit_batch(self, part: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor
                   ) -> torch.Tensor:
        """-> control fields (B, 3, g, g, g) at the finest level, in working voxels."""
        b, d = part.shape[0], part.shape[-1]
        ctrl = torch.zeros(b, 3, *(self.levels[0],) * 3, device=part.device)
        n_vox = float(mask.sum())
        for g in self.levels:
            if ctrl.shape[-1] != g:
                ctrl = upsample_field(ctrl, g)
            ctrl = ctrl.detach().requires_grad_(True)
            gain = torch.ones(b, device=part.device, requires_grad=True)
            opt = torch.optim.Adam([ctrl, gain], lr=self.lr)
            scale = (g / 3.0) ** 3  # penalties per control point, comparable across levels
            for _ in range(self.n_iter):
                opt.zero_grad()
                moved = warp(ref, upsample_field(ctrl, d))
                data = ((part - gain[:, None, None, None] * moved) ** 2 * mask).flatten(1)
                loss = data.sum(1) / n_vox + (self.smoothness * _grad_penalty(ctrl)
                                              + self.ridge * (ctrl**2).flatten(1).sum(1)
                                              ) / scale
                loss.sum().backward()
                opt.step()
        return ctrl.detach()

    # ------------------------------------------------------------------ fit
    def fit(self, particles: ParticleSet) -> Flow:
        self._check_input(particles)
        check_weights(particles, self.name)
        if self.n_components < 1 or not self.levels:
            raise ValueError(f"{self.name}: n_components >= 1 and at least one level needed")
        device = resolve_device(self.device)
        o = particles.optics
        t0 = time.perf_counter()
        lowpass = self.lowpass_A or 4.0 * o.pixel_size_A
        small = working_box(o.box, o.pixel_size_A, lowpass)
        filt = lowpass_filter(o.box, lowpass, o.pixel_size_A, 3, device=device)
        radius = self.mask_radius_A * small / (o.box * o.pixel_size_A) \
            if self.mask_radius_A else None
        mask = default_mask(small, radius, 1.0 if radius else None, device)
        n = particles.n_particles
        bar = tqdm(total=2 * n, desc="flow", unit="ptcl", disable=not self.progress,
                   leave=False)
        avg = global_average(particles, self.batch_size, device, progress=bar.update)
        g = self.levels[-1]
        fields = np.zeros((n, 3, g, g, g), dtype=np.float32)
        for idx, y, w in iter_reference(particles, self.batch_size, device):
            part, ref = self._pairs(y, w, avg.mean_ft, filt, o.box, small, mask)
            fields[idx] = self._fit_batch(part, ref, mask).cpu().numpy()
            bar.update(len(idx))
        bar.close()
        voxel_A = o.box * o.pixel_size_A / small
        self.fields_ = fields * voxel_A  # Angstrom
        self.average_ = padded_to_volume(avg.mean_ft, o.box).cpu()
        self.pixel_size_A_ = o.pixel_size_A
        self._pca()
        self.labels_, self.cluster_info_ = self._cluster_latent(self.latent_)
        self.timings_ = {"fit_s": time.perf_counter() - t0}
        return self

    def _feature_weights(self) -> np.ndarray:
        """(g, g, g) weight of each control point: the average's (smoothed, positive)
        density there relative to its maximum; fields in empty regions are noise."""
        g = self.levels[-1]
        avg = self.average_.clamp_min(0)[None, None]
        dens = F.adaptive_avg_pool3d(avg, g)[0, 0]
        return (dens / dens.max().clamp_min(1e-12)).numpy()

    def _pca(self) -> None:
        self.feature_weights_ = self._feature_weights()
        x = (self.fields_ * self.feature_weights_[None, None]).reshape(
            len(self.fields_), -1).astype(np.float64)
        self.field_mean_ = x.mean(0)
        xc = x - self.field_mean_
        _, s, vt = np.linalg.svd(xc, full_matrices=False)
        k = min(self.n_components, len(s))
        big = np.abs(vt[:k]).argmax(1)
        sign = np.where(vt[np.arange(k), big] < 0, -1.0, 1.0)
        self.components_ = vt[:k] * sign[:, None]  # (C, 3 g^3)
        self.explained_variance_ratio_ = s[:k] ** 2 / max((s**2).sum(), 1e-30)
        self.latent_ = xc @ self.components_.T

    # ------------------------------------------------------------------ outputs
    def transform(self, particles: ParticleSet | None = None) -> np.ndarray:
        return self._fitted_output("latent_", particles)

    def predict(self, particles: ParticleSet | None = None) -> np.ndarray:
        if vars(self).get("latent_") is not None and self.labels_ is None:
            raise NotImplementedError(f"{self.name}: fitted without clustering")
        return self._fitted_output("labels_", particles)

    def warped_average(self, fields_A: np.ndarray) -> torch.Tensor:
        """The average warped by control fields (F, 3 g^3) in A -> (F, D, D, D)."""
        d = self.average_.shape[-1]
        g = self.levels[-1]
        ctrl = torch.as_tensor(fields_A, dtype=torch.float32).reshape(-1, 3, g, g, g)
        dense = upsample_field(ctrl / self.pixel_size_A_, d)
        return warp(self.average_[None].expand(len(ctrl), -1, -1, -1).contiguous(), dense)

    def particle_volumes(self, index: np.ndarray) -> torch.Tensor | None:
        return self.warped_average(self.fields_[np.asarray(index)].reshape(len(index), -1))

    def save(self, out_dir: str | Path, particles: ParticleSet) -> None:
        """latent.csv, the star with latent columns, assignments when clustered;
        average.mrc; ``component_XX/frame_YY.mrc``: the average warped along each
        component from -2 to +2 SD; fields.npy (N, 3, g, g, g) in A; method.json."""
        from tomohet.io.mrc import write_mrc
        from tomohet.methods.outputs import save_continuous

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_continuous(self, out, particles)
        write_mrc(out / "average.mrc", self.average_.numpy(), self.pixel_size_A_)
        from tomohet.io.atomic import atomic_path

        with atomic_path(out / "fields.npy") as tmp:
            np.save(tmp, self.fields_, allow_pickle=False)
        steps = np.linspace(-2, 2, 9)
        sd = self.latent_.std(0)
        for c in range(self.components_.shape[0]):
            w = np.broadcast_to(self.feature_weights_[None], (3, *self.feature_weights_.shape))
            w = np.maximum(w.reshape(-1), 1e-3)  # features -> fields (A)
            f = (self.field_mean_[None] + steps[:, None] * sd[c] * self.components_[c][None]) / w
            vols = self.warped_average(f)
            folder = out / f"component_{c + 1:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, t in enumerate(steps):
                write_mrc(folder / f"frame_{i:02d}_{t:+.1f}sd.mrc", vols[i].numpy(),
                          self.pixel_size_A_)
        info = {"method": self.name,
                "explained_variance_ratio": self.explained_variance_ratio_.tolist(),
                "params": {k: v if isinstance(v, int | float | str | bool | type(None))
                           else repr(v) for k, v in self.get_params().items()},
                "timings_s": self.timings_}
        if self.labels_ is not None:
            info["clusters"] = self.cluster_info_
        atomic_write_text(out / "method.json", json.dumps(info, indent=1))
