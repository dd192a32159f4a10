"""A linear subspace fitted directly on 2D tilt images: probabilistic PCA by EM.

Model (Tipping & Bishop 1999, with the tilt-series forward model of
:mod:`tomohet.physics.forward`): particle n has coordinates ``z_n ~ N(0, I)`` and the
structure ``V_n = mu + sum_j z_nj U_j``; its tilt image t is
``X_nt = H_nt P_nt V_n + noise`` (CTF, dose filter, shift and projection ``P_nt``),
noise Gaussian with power per (tilt group, shell).

E-step, per particle: with ``G_ij = <H P V_i, H P V_j>`` and ``r_j = <H P V_j, X>``
(noise-weighted sums over visible images and frequencies; ``V_0 = mu``), the posterior
of ``z`` is Gaussian with precision ``I + G_zz`` and mean ``(I + G_zz)^-1 (r_z - G_z0)``.
M-step, per Fourier voxel of the (padded) reference: ``sum E[zt zt^T] bp(|H|^2 w) u =
sum E[zt] bp(H^* X w)`` with ``zt = (1, z)``, solved for ``u = (mu, U_1..U_K)`` with a
shell-wise ridge. Finally coordinates are rotated to uncorrelated, decreasing-variance
components (the model is invariant to that rotation).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tomohet import parallel
from tomohet.data.particles import TiltSeriesParticles
from tomohet.data.prepare import prepare_batch
from tomohet.methods.base import ParticleSet, default_mask, register, seed_of
from tomohet.methods.focus import resolve_focus
from tomohet.methods.linear.common import LinearMethod
from tomohet.physics.forward import NoiseModel, PreparedBatch, model_transforms
from tomohet.physics.fourier import (
    freq_grid_2d,
    ft_to_volume,
    lowpass_filter,
    volume_to_ft,
)
from tomohet.physics.linalg import inv_spd, solve_spd, symmetric_eigh
from tomohet.physics.projection import VolumeProjector, scatter_plan, volumes_from_sums

__all__ = ["PPCA2D"]


def _pairs(k1: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k1) for j in range(i, k1)]


def _plan(prep: PreparedBatch, vals: torch.Tensor, wts: torch.Tensor, padded: int):
    """Scatter plan of the masked pixels of every image of a batch."""
    b, t, d, dh = prep.data.shape
    rot = prep.rotation.reshape(b * t, 3, 3).float()
    k2 = freq_grid_2d(d, device=rot.device)
    coords = k2[..., 0:1] * rot[:, 0, None, None, :] + k2[..., 1:2] * rot[:, 1, None, None, :]
    coords = torch.where(prep.mask.reshape(b * t, d, dh, 1), coords, torch.ones_like(coords))
    return scatter_plan(coords, vals.reshape(b * t, d, dh), wts.reshape(b * t, d, dh),
                        k2[..., 0] == 0, padded)


def _scatter(grid: torch.Tensor, plan, item_weights: torch.Tensor, use_values: bool) -> None:
    """grid (V, P^3) += plan values (or weights) times signed per-item weights (V, items)."""
    flat, corner_w, img_idx, vals, wts = plan
    src = vals if use_values else wts
    p3 = grid.shape[1]
    for v in range(grid.shape[0]):
        contrib = corner_w * (src * item_weights[v][img_idx])[None]
        grid.view(-1).index_add_(0, (flat + v * p3).reshape(-1), contrib.reshape(-1))


@register
class PPCA2D(LinearMethod):
    """Mean volume + ``n_components`` eigenvolumes fitted by EM on the 2D tilt images.

    ``focus_mask``: ``"auto"`` (the default;
    :func:`~tomohet.methods.focus.discovered_focus`: the region where the
    residuals against the consensus vary above noise; no restriction when the variation
    is not local, which is then exactly the method with ``focus_mask="none"``), ``"none"``
    or None (eigenvolumes anywhere), or a (D, D, D) map or mrc path. With a focus the
    eigenvolumes are multiplied by it after every M-step (the subspace varies only there;
    the mean is unrestricted).
    """

    name = "ppca2d"
    input_kind = "tilt"
    # focus_mask "auto" is the default; named so that older bench caches are not reused
    bench_params = {"n_components": 2, "n_iter": 8, "cluster": None, "focus_mask": "auto"}

    def __init__(self, n_components: int = 2, n_iter: int = 10,
                 max_resolution_A: float | None = None, ridge: float = 0.01,
                 init_scale: float = 0.1, pad: int = 2, focus_mask: Any = "auto",
                 cluster: str | None = "gmm",
                 n_clusters: int | None = None, max_clusters: int = 8, batch_size: int = 32,
                 device: str | None = None, progress: bool = True,
                 random_state: int | None = None) -> None:
        self.n_iter = n_iter
        self.max_resolution_A = max_resolution_A
        self.ridge = ridge
        self.init_scale = init_scale
        self.pad = pad
        self.focus_mask = focus_mask
        self._common(n_components, cluster, n_clusters, max_clusters, batch_size, device,
                     progress, random_state)

    # ------------------------------------------------------------------ one EM pass
    def _pass(self, particles: TiltSeriesParticles, vols: torch.Tensor, noise: NoiseModel,
              device: torch.device, bar) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, float]:
        """E-step for all particles and M-step sums -> (A grids, b grids, means, log-lik)."""
        k1 = vols.shape[0]
        pairs = _pairs(k1)
        proj = VolumeProjector(vols, pad=self.pad)
        p3 = proj.padded**3
        grid_a = torch.zeros((len(pairs), p3), device=device)
        grid_b = torch.zeros((k1, p3), dtype=torch.complex64, device=device)
        means = np.zeros((particles.n_particles, k1 - 1))
        total_ll = 0.0
        eye = torch.eye(k1 - 1, device=device)
        # this rank's row blocks (tomohet.parallel; all rows on one rank)
        mine = parallel.owned_rows(particles.n_particles)
        for batch in particles.batches(self.batch_size, device, index=mine):
            prep = prepare_batch(batch, particles.optics, self.max_resolution_A)
            pred = model_transforms(proj, prep) * prep.transfer  # (K1, B, T, D, Dh)
            inv = prep.mask.float() * noise.herm / 2 / (
                noise.per_pixel(prep.group) * prep.premult_power.clamp_min(1e-6))
            g = torch.einsum("ibtyx,jbtyx,btyx->bij", pred.real, pred.real, inv) + \
                torch.einsum("ibtyx,jbtyx,btyx->bij", pred.imag, pred.imag, inv)
            r = torch.einsum("ibtyx,btyx->bi", (pred.conj() * prep.data[None]).real, inv)
            prec = eye + g[:, 1:, 1:]
            cov = inv_spd(prec)
            m = (cov @ (r[:, 1:] - g[:, 1:, 0])[..., None])[..., 0]  # (B, K)
            zt = torch.cat([torch.ones_like(m[:, :1]), m], dim=1)
            second = zt[:, :, None] * zt[:, None, :]
            second[:, 1:, 1:] += cov
            total_ll += float((r[:, 0] - 0.5 * g[:, 0, 0]).sum()
                              + 0.5 * (m[:, None, :] @ prec @ m[..., None]).sum()
                              - 0.5 * torch.logdet(prec).sum())
            fit = torch.einsum("bi,ibtyx->btyx", zt.to(pred.dtype), pred)
            noise.accumulate((prep.data - fit).abs() ** 2, prep)
            w = prep.mask.float() / (noise.per_pixel(prep.group)
                                     * prep.premult_power.clamp_min(1e-6))
            plan = _plan(prep, prep.transfer.conj() * prep.data * w,
                         prep.transfer.abs() ** 2 * w, proj.padded)
            t = prep.mask.shape[1]
            per_img = zt.repeat_interleave(t, dim=0).T  # (K1, B*T)
            _scatter(grid_b, plan, per_img, use_values=True)
            sec = torch.stack([second[:, i, j] for i, j in pairs]).repeat_interleave(t, dim=1)
            _scatter(grid_a, plan, sec, use_values=False)
            means[batch.index] = m.cpu().numpy()
            bar.update(len(batch.index))
        ll = np.array([total_ll])
        parallel.all_reduce_sum([grid_a, grid_b, means, noise._sum, noise._count, ll])
        total_ll = float(ll[0])
        noise.update()
        return grid_a, grid_b, means, total_ll

    def _solve(self, grid_a: torch.Tensor, grid_b: torch.Tensor, box: int) -> torch.Tensor:
        """Per-voxel (K+1)x(K+1) systems with a shell-wise ridge -> real (K+1, D, D, D)."""
        k1 = grid_b.shape[0]
        p = round(grid_b.shape[1] ** (1 / 3))
        a = torch.zeros((grid_b.shape[1], k1, k1), device=grid_b.device)
        for n, (i, j) in enumerate(_pairs(k1)):
            a[:, i, j] = grid_a[n]
            a[:, j, i] = grid_a[n]
        c = torch.arange(p, device=a.device) - p // 2
        gz, gy, gx = torch.meshgrid(c, c, c, indexing="ij")
        shell = torch.sqrt((gx**2 + gy**2 + gz**2).float()).round().long().reshape(-1)
        n_sh = int(shell.max()) + 1
        diag = a.diagonal(dim1=-2, dim2=-1)  # (P^3, K1)
        sums = torch.zeros((n_sh, k1), device=a.device).index_add_(0, shell, diag)
        cnt = torch.zeros(n_sh, device=a.device).index_add_(0, shell, torch.ones_like(shell,
                                                                                 dtype=a.dtype))
        shell_mean = (sums / cnt.clamp_min(1)[:, None]).clamp_min(
            1e-6 * float(diag.max()) + 1e-30)
        lam = torch.diag_embed(self.ridge * shell_mean[shell])  # per component and shell
        rhs = grid_b.T[..., None]  # (P^3, K1, 1)
        sol = solve_spd(a + lam, rhs)
        data = sol[..., 0].T.reshape(k1, p, p, p)
        ones = torch.ones(data.shape, device=data.device)
        return volumes_from_sums(data, ones, box, torch.zeros((), device=data.device))

    # ------------------------------------------------------------------ init + loop
    def _initial(self, particles: TiltSeriesParticles, device: torch.device) -> torch.Tensor:
        from tomohet.methods.average import average

        box, px = particles.optics.box, particles.optics.pixel_size_A
        mean = average(particles, batch_size=self.batch_size, device=device,
                       progress=False)[0].full.to(device)
        g = self._generator(11)
        rnd = torch.randn((self.n_components, box, box, box), generator=g).to(device)
        lp = lowpass_filter(box, 4 * px, px, 3, device=device)
        rnd = ft_to_volume(volume_to_ft(rnd) * lp, box)
        rnd = rnd * default_mask(box, device=device)
        if self.focus_mask_ is not None:
            rnd = rnd * self.focus_mask_.to(device)
        rnd = rnd / rnd.flatten(1).std(1)[:, None, None, None] * mean.std() * self.init_scale
        return torch.cat([mean[None], rnd])

    def _focus(self, particles: TiltSeriesParticles, device: torch.device
               ) -> torch.Tensor | None:
        """The eigenvolumes' support (see the class doc); sets ``discovery_``."""
        focus, self.discovery_ = resolve_focus(
            self.focus_mask, particles, self.n_clusters or self.n_components + 1,
            seed_of(self.random_state), self.batch_size, device, "ppca2d")
        return focus

    def _embed(self, particles: ParticleSet, device: torch.device) -> np.ndarray:
        assert isinstance(particles, TiltSeriesParticles)
        self.focus_mask_ = self._focus(particles, device)
        focus = None if self.focus_mask_ is None else self.focus_mask_.to(device)
        vols = self._initial(particles, device)
        noise = NoiseModel(particles.optics.box, n_groups=10, device=device)
        bar = self._bar(max(self.n_iter, 1) * particles.n_particles, "EM")
        self.history_ = []
        means = np.zeros((particles.n_particles, self.n_components))
        for it in range(max(self.n_iter, 1)):
            grid_a, grid_b, means, ll = self._pass(particles, vols, noise, device, bar)
            vols = self._solve(grid_a, grid_b, particles.optics.box)
            if focus is not None:
                vols = torch.cat([vols[:1], vols[1:] * focus])
            self.history_.append({"iteration": it + 1, "log_likelihood": ll})
        bar.close()
        return self._rotate(vols, means)

    def _rotate(self, vols: torch.Tensor, means: np.ndarray) -> np.ndarray:
        """Orthonormal eigenvolumes ordered by the variance of uncorrelated coordinates.

        With ``U = Q R`` (QR over voxels) and centred means ``c``, the structures vary as
        ``Q (R c)``; the eigenvectors ``E`` of ``R cov(c) R^T`` give ``U' = Q E`` and
        ``z' = E^T R c``, the same model (the mean absorbs the coordinates' centre).
        """
        m = torch.as_tensor(means, dtype=torch.float64, device=vols.device)
        centre = m.mean(0)
        u = vols[1:].double()
        k, shape = u.shape[0], u.shape[1:]
        mu = vols[0].double() + torch.einsum("k,kzyx->zyx", centre, u)
        q, r = torch.linalg.qr(u.reshape(k, -1).T)  # (P, K), (K, K)
        c = m - centre
        cov = r @ torch.cov(c.T).reshape(k, k) @ r.T
        vals, vecs = symmetric_eigh(cov)
        order = torch.argsort(vals, descending=True)
        vals, vecs = vals[order].clamp_min(0), vecs[:, order]
        sign = torch.sign(vecs.sum(0))
        vecs = vecs * torch.where(sign == 0, torch.ones_like(sign), sign)
        u_new = (q @ vecs).T.reshape(k, *shape)
        z = c @ r.T @ vecs
        self.explained_variance_ratio_ = (vals / vals.sum().clamp_min(1e-30)).cpu().numpy()
        self.fitted_volumes_ = torch.cat([mu[None], u_new]).float().cpu()
        return z.cpu().numpy()
