"""Per-particle flexible fitting of mode amplitudes through each particle's wedge and CTF.

Data: every particle in the reference frame (:func:`~tomohet.methods.linear.reference.
iter_reference`): ``Y_n = sum H^* X`` and ``W_n = sum |H|^2`` on the box's rfft grid,
kept at the frequencies inside the low-pass where the particle has data (``W_n > 0``).
Model: Gaussian beads at ``R(w) (x0 + sum_k a_k m_k) + t``, transformed exactly
(:func:`~tomohet.physics.elastic.gaussian_atoms_ft`) and scaled per frequency shell by a
profile ``s(|q|)`` fitted once to all particles at zero amplitude (units, blur, envelope).
Per particle: minimise

    sum_q (h_q / 2) |Y_n - W_n s V(a, t, w)|^2 / (W_n sigma^2) + |a|^2 / (2 tau^2)
          + (|t|^2 + |w Rg|^2) / (2 tau_rigid^2)

(``h_q`` the rfft multiplicity, ``sigma^2`` the noise power from the zero-amplitude
residuals) by Levenberg-Marquardt with analytic Jacobians, batched over particles. Each
particle's optimisation depends on its own data only (per-particle damping and
acceptance), so results do not depend on batch size or row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tomohet.methods.linear.reference import iter_reference, subsample_rfft
from tomohet.methods.nma.basis import DeformationBasis
from tomohet.physics.elastic import gaussian_atoms_ft
from tomohet.physics.fourier import freq_grid_3d, hermitian_weights_3d

__all__ = ["FitData", "gather_data", "BeadModel", "fit_scale_and_noise", "fit_particles"]


@dataclass
class FitData:
    """Particles' data at Q kept frequencies: y (N, Q) complex = Y / sqrt(W), sw (N, Q)
    = sqrt(W) (0 where no data); freq (Q, 3) cycles/voxel; herm (Q,); shell (Q,) int."""

    y: torch.Tensor
    sw: torch.Tensor
    freq: torch.Tensor
    herm: torch.Tensor
    shell: torch.Tensor


def gather_data(particles, box: int, lowpass_px: float, batch_size: int,
                device: torch.device, progress=None) -> FitData:
    """One pass over the particles -> :class:`FitData` (frequencies with |k| below
    ``1 / lowpass_px`` cycles/voxel, the zero frequency excluded)."""
    k = freq_grid_3d(box, device=device)
    r = k.norm(dim=-1)
    keep = (r <= 1.0 / lowpass_px) & (r > 0)
    herm = hermitian_weights_3d(box, device=device)[keep]
    ys, sws = [], []
    for idx, y, w in iter_reference(particles, batch_size, device):
        y, w = subsample_rfft(y)[:, keep], subsample_rfft(w)[:, keep].clamp_min(0)
        sw = w.sqrt()
        good = w > 1e-6 * w.amax(1, keepdim=True).clamp_min(1e-30)
        ys.append(torch.where(good, y / sw.clamp_min(1e-30), torch.zeros_like(y)))
        sws.append(torch.where(good, sw, torch.zeros_like(sw)))
        if progress is not None:
            progress(len(idx))
    shell = torch.round(r[keep] * box).long()
    return FitData(torch.cat(ys), torch.cat(sws), k[keep], herm, shell)


class BeadModel:
    """Transforms of the deformed beads at the kept frequencies (see module doc)."""

    def __init__(self, basis: DeformationBasis, pixel_size_A: float, resolution_A: float,
                 data: FitData, device: torch.device) -> None:
        self.px = pixel_size_A
        self.beads = torch.as_tensor(basis.beads_A, dtype=torch.float32, device=device)
        self.modes = torch.as_tensor(basis.modes, dtype=torch.float32, device=device)
        self.weight = torch.as_tensor(basis.weight / basis.weight.sum(), dtype=torch.float32,
                                      device=device)
        sig = np.sqrt((0.225 * resolution_A) ** 2 + basis.sigma_A**2)
        self.sigma_px = torch.as_tensor(sig / pixel_size_A, dtype=torch.float32, device=device)
        self.freq = data.freq
        rg = np.sqrt((basis.weight[:, None] * basis.beads_A**2).sum() / basis.weight.sum())
        self.rg_A = float(max(rg, pixel_size_A))
        self.scale = torch.ones(int(data.shell.max()) + 1, dtype=torch.float32, device=device)
        self.shell = data.shell

    @property
    def n_modes(self) -> int:
        return int(self.modes.shape[0])

    def positions(self, p: torch.Tensor) -> torch.Tensor:
        """Parameters (..., K + 6) -> bead positions (..., M, 3) in Angstrom."""
        k = self.n_modes
        x = self.beads + torch.einsum("...k,kmi->...mi", p[..., :k], self.modes)
        rot = self.rotation(p)
        return torch.einsum("...ij,...mj->...mi", rot, x) + p[..., None, k : k + 3]

    def rotation(self, p: torch.Tensor) -> torch.Tensor:
        """(..., K + 6) -> (..., 3, 3) rotation ``exp([w / Rg]x)``."""
        w = p[..., self.n_modes + 3 :] / self.rg_A
        z = torch.zeros_like(w[..., 0])
        skew = torch.stack([torch.stack([z, -w[..., 2], w[..., 1]], -1),
                            torch.stack([w[..., 2], z, -w[..., 0]], -1),
                            torch.stack([-w[..., 1], w[..., 0], z], -1)], -2)
        return torch.linalg.matrix_exp(skew)

    def transform_and_jacobian(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters (B, K + 6) -> model (B, Q) and its Jacobian (B, Q, K + 6), complex.

        Exact for amplitudes and shifts; for the rotation the derivative of a small
        extra rotation applied on the left (exact at w = 0, and a descent direction
        nearby: the acceptance test uses the exact cost).
        """
        k = self.n_modes
        rot = self.rotation(p)
        y = self.beads + torch.einsum("bk,kmi->bmi", p[:, :k], self.modes)
        xr = torch.einsum("bij,bmj->bmi", rot, y)  # rotated, before the shift
        x = xr + p[:, None, k : k + 3]
        kx = self.freq / self.px  # cycles / A
        amp = self.weight[:, None] * torch.exp(
            -2 * torch.pi**2 * self.sigma_px[:, None] ** 2 * (self.freq**2).sum(-1))
        phase = -2 * torch.pi * (x @ kx.T)  # (B, M, Q)
        cos_t, sin_t = (amp * torch.cos(phase)).transpose(1, 2), \
            (amp * torch.sin(phase)).transpose(1, 2)  # (B, Q, M)
        b, q = cos_t.shape[:2]
        rm = torch.einsum("bij,kmj->bmki", rot, self.modes).reshape(b, -1, 3 * k)
        # sums over beads as real batched matrix products: [1 | rotated modes | x_rot]
        rhs = torch.cat([torch.ones_like(xr[..., :1]), rm, xr], -1)  # (B, M, 1 + 3K + 3)
        sums = torch.complex(cos_t @ rhs, sin_t @ rhs) \
            * self.scale[self.shell][None, :, None]  # (B, Q, 1 + 3K + 3)
        v = sums[..., 0]
        sa = sums[..., 1 : 1 + 3 * k].reshape(b, q, k, 3)
        sx = sums[..., 1 + 3 * k :]
        d = -2j * torch.pi
        kc = kx.to(v.dtype)
        ja = d * torch.einsum("bqki,qi->bqk", sa, kc)
        jt = d * v[..., None] * kc[None]  # (B, Q, 3)
        jw = d * torch.linalg.cross(sx, kc[None].expand_as(sx), dim=-1) / self.rg_A
        return v, torch.cat([ja, jt, jw], -1)

    def transform(self, p: torch.Tensor) -> torch.Tensor:
        """Parameters (..., K + 6) -> (..., Q) complex model transform (scaled)."""
        v = gaussian_atoms_ft(self.positions(p) / self.px, self.weight, self.sigma_px,
                              self.freq)
        return v * self.scale[self.shell]


def fit_scale_and_noise(model: BeadModel, data: FitData, batch_size: int) -> float:
    """Fit the shell profile ``s`` at zero amplitude (weighted least squares over every
    particle) -> the noise power sigma^2 of the residuals per (unit-weight) voxel."""
    n, dev = data.y.shape[0], data.y.device
    model.scale = torch.ones_like(model.scale)
    v0 = model.transform(torch.zeros(model.n_modes + 6, device=dev))
    nshell = model.scale.numel()
    num = torch.zeros(nshell, device=dev, dtype=torch.float64)
    den = torch.zeros_like(num)
    for s in range(0, n, batch_size):
        y, sw = data.y[s : s + batch_size], data.sw[s : s + batch_size]
        num.index_add_(0, data.shell, ((sw * (v0.conj() * y)).real * data.herm).sum(0).double())
        den.index_add_(0, data.shell, ((sw**2 * v0.abs() ** 2) * data.herm).sum(0).double())
    model.scale = (num / den.clamp_min(1e-30)).float()
    v0 = v0 * model.scale[data.shell]
    res = torch.zeros((), dtype=torch.float64, device=dev)
    cnt = torch.zeros((), dtype=torch.float64, device=dev)
    for s in range(0, n, batch_size):
        y, sw = data.y[s : s + batch_size], data.sw[s : s + batch_size]
        has = (sw > 0).float()
        res += ((y - sw * v0).abs() ** 2 * data.herm * has).sum().double()
        cnt += (data.herm * has).sum().double()
    return float(res / cnt.clamp_min(1))


def fit_particles(model: BeadModel, data: FitData, sigma2: float, prior_sd_A: float,
                  rigid_sd_A: float, n_iter: int, batch_size: int,
                  progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt per particle -> (N, K + 6) parameters (amplitudes in A, shift
    in A, rotation vector times Rg in A) and (N,) final costs."""
    n, dev = data.y.shape[0], data.y.device
    k = model.n_modes
    n_par = k + 6
    tau = torch.tensor([prior_sd_A] * k + [rigid_sd_A] * 6, device=dev)
    if rigid_sd_A <= 0:  # no rigid correction: its parameters stay at zero
        tau[k:] = 1e-6
    c = (data.herm / sigma2).sqrt()

    def evaluate(p: torch.Tensor, y: torch.Tensor, sw: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> residuals (B, R) and their Jacobian (B, R, P), R = 2Q + P."""
        v, jv = model.transform_and_jacobian(p)
        r = c * (y - sw * v)
        jr = -(c * sw)[..., None] * jv  # (B, Q, P)
        prior = torch.diag(1.0 / tau).expand(p.shape[0], -1, -1)
        return (torch.cat([r.real, r.imag, p / tau], -1),
                torch.cat([jr.real, jr.imag, prior], 1))

    params = np.zeros((n, n_par))
    costs = np.zeros(n)
    eye = torch.eye(n_par, device=dev)
    for s in range(0, n, batch_size):
        y, sw = data.y[s : s + batch_size], data.sw[s : s + batch_size]
        b = y.shape[0]
        p = torch.zeros(b, n_par, device=dev)
        lam = torch.full((b,), 1e-2, device=dev)
        with torch.no_grad():
            r, jac = evaluate(p, y, sw)
            cost = 0.5 * (r**2).sum(1)
            for _ in range(n_iter):
                jtj = jac.transpose(1, 2) @ jac
                g = (jac.transpose(1, 2) @ r[..., None])[..., 0]
                damp = lam[:, None, None] * (jtj.diagonal(dim1=1, dim2=2)[:, :, None] * eye
                                             + 1e-9 * eye)
                step = torch.linalg.solve((jtj + damp).double(), -g.double()[..., None])
                p_new = p + step[..., 0].float()
                r_new, jac_new = evaluate(p_new, y, sw)
                cost_new = 0.5 * (r_new**2).sum(1)
                ok = cost_new < cost
                p = torch.where(ok[:, None], p_new, p)
                r = torch.where(ok[:, None], r_new, r)
                jac = torch.where(ok[:, None, None], jac_new, jac)
                cost = torch.where(ok, cost_new, cost)
                lam = torch.where(ok, lam / 3, lam * 4).clamp(1e-7, 1e7)
        params[s : s + b] = p.cpu().numpy()
        costs[s : s + b] = cost.cpu().numpy()
        if progress is not None:
            progress(b)
    return params, costs
