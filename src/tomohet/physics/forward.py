"""The per-tilt-image forward model and Gaussian log-likelihoods, shared by every method.

For tilt image ``t`` of particle ``n`` and class volume ``V_k``::

    X_nt(k) = M_nt(k) * ( H_nt(k) * S_nt(k) * V_k^(R_nt^T [k, 0]) + noise ),
    H = CTF * exposure_filter * ctf_scale,   S = phase shift to the particle centre,

with ``M = CTF`` when the stacks are CTF-premultiplied (and ``* exposure`` when already dose
weighted), else 1. Noise is white within a resolution shell, with power ``sigma2`` per
(tilt group, shell). Only frequencies inside the image's dose mask (and inside an
optional resolution limit) count.

Tensors in, tensors out: :mod:`tomohet.data.prepare` turns particle batches into a
:class:`PreparedBatch`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tomohet.physics.fourier import (
    freq_grid_3d,
    hermitian_weights_2d,
    hermitian_weights_3d,
    radial_shell_index,
)
from tomohet.physics.projection import VolumeProjector

__all__ = ["PreparedBatch", "tilt_groups", "log_likelihoods", "mahalanobis2", "model_transforms",
           "NoiseModel"]


@dataclass
class PreparedBatch:
    """Fourier-space data of a batch ready for likelihoods and back-projection.

    data (B, T, D, Dh) complex: observed transforms X.
    transfer (B, T, D, Dh): ``M * H * S`` -- multiplies a central slice to predict X
        (complex because of the shift phase).
    mask (B, T, D, Dh) bool: frequencies that count (visible image, dose, resolution).
    premult_power (B, T, D, Dh): ``M^2`` -- noise power multiplier from premultiplication.
    group (B, T) long: tilt-group index of each image for the noise model.
    rotation (B, T, 3, 3): full reference -> image matrices.

    For subtomograms (``geometry == "subtomo"``) the same fields hold 3D transforms:
    data/transfer/mask/premult_power (B, D, D, D//2+1), group (B,), rotation (B, 3, 3)
    reference -> subtomogram; transfer is the 3D CTF / wedge volume.
    """

    data: torch.Tensor
    transfer: torch.Tensor
    mask: torch.Tensor
    premult_power: torch.Tensor
    group: torch.Tensor
    rotation: torch.Tensor
    visible: torch.Tensor
    geometry: str = "tilt"
    tilt_deg: torch.Tensor | None = None  # (B, T) for tilt geometry


def tilt_groups(tilt_deg: torch.Tensor, group_width_deg: float) -> torch.Tensor:
    """Noise-model group of each image: |tilt| binned by ``group_width_deg``."""
    return torch.div(tilt_deg.abs() + 1e-3, group_width_deg, rounding_mode="floor").long()


class NoiseModel:
    """Noise power per (tilt group, resolution shell), estimated from residuals.

    ``sigma2`` (G, S) with S = D//2 + 2 shells (the last collects corners).
    ``dispersion``: :meth:`update` stores ``dispersion`` x the residual power, the
    noise of a *smooth* difference when the data's Fourier samples are correlated (the
    per-sample power counts such a difference's evidence that many times over;
    :mod:`tomohet.methods.dispersion`); 1 for independent samples.
    """

    def __init__(
        self, box: int, n_groups: int, device: torch.device | str = "cpu", ndim: int = 2,
        dispersion: float = 1.0,
    ) -> None:
        self.box = box
        self.ndim = ndim
        self.dispersion = float(dispersion)
        self.n_shells = box // 2 + 2
        # a placeholder until estimated: shells never estimated are not "kept" by update
        self._sigma2 = torch.ones((n_groups, self.n_shells), device=device)
        self._estimated = torch.zeros(self.n_shells, dtype=torch.bool, device=device)
        self._sum = torch.zeros_like(self._sigma2)
        self._count = torch.zeros_like(self._sigma2)
        shells = radial_shell_index(box, ndim, device=device).clamp_max(self.n_shells - 1)
        self.shell = shells  # (D, Dh) or (D, D, Dh)
        self.herm = (hermitian_weights_2d(box, device=device) if ndim == 2
                     else hermitian_weights_3d(box, device=device))

    @property
    def sigma2(self) -> torch.Tensor:
        """(G, S) noise power per real component."""
        return self._sigma2

    @sigma2.setter
    def sigma2(self, value: torch.Tensor) -> None:
        """Assigning sigma2 (a previous estimate, a checkpoint) makes every shell an
        estimate that ``update(fill="keep")`` may keep."""
        self._sigma2 = value
        self._estimated = torch.ones(value.shape[-1], dtype=torch.bool, device=value.device)

    def scale_dispersion(self, factor: float) -> None:
        """Multiply the estimate and :attr:`dispersion` by ``factor`` (which shells hold
        an estimate is unchanged)."""
        self._sigma2 = self._sigma2 * float(factor)
        self.dispersion *= float(factor)

    @property
    def estimated(self) -> torch.Tensor:
        """(S,) bool: shells holding an estimate (from data or assigned), not the
        constructor's placeholder."""
        return self._estimated

    def per_pixel(self, group: torch.Tensor) -> torch.Tensor:
        """(B, T) groups -> (B, T, D, Dh) noise power (3D: (B,) -> (B, D, D, Dh))."""
        g = group.clamp_max(self.sigma2.shape[0] - 1)
        return self.sigma2[g][..., self.shell]

    def accumulate(self, residual_power: torch.Tensor, prep: PreparedBatch) -> None:
        """Add ``|X - model|^2`` samples (B, T, D, Dh) of a prepared batch (divided by its
        ``M^2`` here) to the running estimate."""
        g = prep.group.clamp_max(self.sigma2.shape[0] - 1)
        w = prep.mask.float() * self.herm
        g = g.reshape(*g.shape, *([1] * self.shell.ndim)).expand(w.shape)
        self.accumulate_samples(residual_power.reshape(-1), self.shell.expand(w.shape),
                                w.reshape(-1), g.reshape(-1), prep.premult_power.expand(w.shape))

    def accumulate_samples(self, residual_power: torch.Tensor, shell: torch.Tensor,
                           weight: torch.Tensor, group: torch.Tensor | None = None,
                           premult_power: torch.Tensor | None = None) -> None:
        """Add flat samples to the running estimate (any shapes, all the same size).

        residual_power ``|X - model|^2``; shell: radial index ``round(|k| D)`` (clamped to
        the corner shell); weight: the sample's Hermitian multiplicity times any mask;
        group: tilt group (None: group 0); premult_power: ``M^2`` of premultiplied data
        (None: 1). Each sample adds ``weight * residual_power / M^2``.
        """
        n_g = self.sigma2.shape[0]
        shell = shell.reshape(-1).clamp_max(self.n_shells - 1)
        if group is not None:
            shell = group.reshape(-1).clamp_max(n_g - 1) * self.n_shells + shell
        w = weight.reshape(-1).to(self._sum.dtype)
        r = residual_power.reshape(-1).to(self._sum.dtype)
        if premult_power is not None:
            r = r / premult_power.reshape(-1).clamp_min(1e-6)
        self._sum.view(-1).index_add_(0, shell, r * w)
        self._count.view(-1).index_add_(0, shell, w)

    def update(self, floor: float = 1e-8, fill: str = "keep") -> None:
        """Replace sigma2 by the accumulated mean.

        A group without data in a shell borrows the mean over groups; a shell without data
        in any group either keeps its previous estimate (``fill="keep"``: an EM pass that
        leaves out shells past its current size keeps their last estimate) or is
        interpolated linearly between the nearest shells with data (``fill="interpolate"``:
        a single estimate with no previous value, as the VAE's). A shell that never held an
        estimate (the constructor's placeholder of 1, which can be off by orders of
        magnitude from the data's power) is interpolated in either mode, extrapolated flat
        past the last shell with an estimate (issue 12: a placeholder of 1 against a noise
        power of 6e9 made the log-likelihood 3e11 once the pass reached that shell).
        """
        if fill not in ("keep", "interpolate"):
            raise ValueError(f"fill must be 'keep' or 'interpolate', got {fill!r}")
        ok = self._count > 0
        new = torch.where(ok, self._sum / self._count.clamp_min(1), self.sigma2 * 2)
        # groups without any data in a shell borrow the mean over groups
        shell_mean = (self._sum.sum(0) / self._count.sum(0).clamp_min(1))[None].expand_as(new)
        has = self._count.sum(0) > 0
        new = torch.where(ok, new, torch.where(has, shell_mean, new))
        known = has if fill == "interpolate" else has | self._estimated
        if bool(known.any()) and not bool(known.all()):
            new = torch.where(known[None], new, _interpolate_shells(new, known))
        # complex Gaussian: E|n|^2 = 2 sigma^2 per real component; store E|n|^2 / 2
        self._sigma2 = (new / 2 * self.dispersion).clamp_min(floor)
        self._estimated = known.clone()
        self._sum.zero_()
        self._count.zero_()

    @property
    def has_samples(self) -> bool:
        """Whether any sample was accumulated since the last :meth:`update`."""
        return bool((self._count > 0).any())

    def shell_power(self, group: int = 0) -> torch.Tensor:
        """``E|n|^2`` per shell of one group (S,): twice :attr:`sigma2` (which holds the
        power per real component)."""
        return 2 * self.sigma2[group]

    def initialise_from(self, other: NoiseModel) -> None:
        """Start from ``other``'s estimate (shells it never estimated stay unestimated)."""
        self._sigma2 = other.sigma2.clone()
        self._estimated = other.estimated.clone()
        self._sum = torch.zeros_like(self._sigma2)  # its groups
        self._count = torch.zeros_like(self._sigma2)


def _interpolate_shells(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(G, S) values, (S,) bool -> every shell linearly interpolated between the nearest
    known shells (flat before the first and past the last)."""
    idx = torch.arange(values.shape[-1], device=values.device, dtype=values.dtype)
    at = idx[known]
    hi = torch.searchsorted(at, idx).clamp_max(len(at) - 1)  # first known >= i
    lo = (hi - (at[hi] > idx).long()).clamp_min(0)  # last known <= i (or the first)
    span = at[hi] - at[lo]
    frac = torch.where(span > 0, (idx - at[lo]) / span.clamp_min(1), 0.0)
    vals = values[:, known]
    return vals[:, lo] + (vals[:, hi] - vals[:, lo]) * frac


def log_likelihoods(
    prep: PreparedBatch,
    slices: torch.Tensor,
    noise: NoiseModel,
    per_tilt: bool = False,
) -> torch.Tensor:
    """Gaussian log-likelihood of each particle under each model, up to a constant.

    slices (M, B, ...) complex model transforms (M classes, or classes x poses), with
    ``...`` the shape of ``prep.data`` after B; returns (B, M), or (B, T, M) with
    ``per_tilt``. ``-sum |X - H V|^2 / (2 sigma2 M^2)`` over masked frequencies, the
    model-independent ``|X|^2`` term dropped.
    """
    # independent complex components: the rfft half plane counts interior columns once
    # and the self-conjugate columns (kx = 0, Nyquist) half
    indep = noise.herm / 2
    inv = prep.mask.float() * indep / (
        noise.per_pixel(prep.group) * prep.premult_power.clamp_min(1e-6)
    )
    pred = slices * prep.transfer
    cross = (prep.data.conj() * pred).real
    ll = (cross - 0.5 * (pred.real**2 + pred.imag**2)) * inv
    if per_tilt:
        return ll.sum(dim=(-2, -1)).movedim(0, -1)  # (B, T, M)
    return ll.flatten(2).sum(-1).T  # (B, M)


def mahalanobis2(prep: PreparedBatch, diff: torch.Tensor, noise: NoiseModel) -> torch.Tensor:
    """Squared distance ``d'^2`` between two models in the metric of
    :func:`log_likelihoods`: ``diff`` (M, B, ...) the difference of their model
    transforms (before the transfer function) -> (B, M). For a calibrated likelihood the
    log-likelihood ratio of the two models has variance ``d'^2`` on data from either."""
    inv = prep.mask.float() * (noise.herm / 2) / (
        noise.per_pixel(prep.group) * prep.premult_power.clamp_min(1e-6))
    pred = diff * prep.transfer
    return ((pred.real**2 + pred.imag**2) * inv).flatten(2).sum(-1).T


def model_transforms(projector: VolumeProjector, prep: PreparedBatch,
                     pose_deltas: torch.Tensor | None = None) -> torch.Tensor:
    """Model transforms of every volume for every item of a prepared batch.

    Tilt geometry: central slices at ``rotation`` -> (K, B, T, D, Dh); subtomograms: the
    volume transform on the rotated 3D grid -> (K, B, D, D, Dh). With ``pose_deltas``
    (J, 3, 3), rotations ``R @ delta_j`` are tried: -> (K, J, B, ...).
    """
    rot = prep.rotation
    if pose_deltas is not None:
        extra = rot.ndim - 2
        deltas = pose_deltas.to(rot.device).reshape(-1, *([1] * extra), 3, 3)
        rot = rot[None] @ deltas
    if prep.geometry == "tilt":
        return projector.slices(rot)
    d = projector.box
    k3 = freq_grid_3d(d, device=rot.device)  # (D, D, Dh, 3)
    # subtomogram frequency k samples the reference at A.T k
    freqs = torch.einsum("...ji,zyxj->...zyxi", rot, k3)
    return projector.sample(freqs)
