"""Tilt schemes, dose, CTF parameters and noise of simulated tilt series.

Dose-symmetric scheme (Hagen et al. 2017): the tilt nearest ``start_deg`` first, then one
group of ``first_group`` tilts on the positive side, then alternating groups of
``group_size`` tilts, each group continuing outwards on its side; when one side is
exhausted the other continues. With ``group_size=2`` (``first_group`` defaults to
``group_size // 2`` = 1): 0, +3, -3, -6, +6, +9, -9, -12, +12, ...
``pre-exposure`` of a tilt = (number of tilts acquired before it) x ``dose_per_tilt``, in
e/A^2 (RELION's ``rlnMicrographPreExposure``).

Noise model: white Gaussian noise of variance ``sigma0^2 / cos(tilt)`` per pixel, with
``sigma0^2`` set from the requested SNR at 0 degrees (see :func:`sigma0_for_snr`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tomohet.physics.ctf import CtfParams, ctf_2d, exposure_filter

__all__ = ["TiltScheme", "dose_symmetric_order", "draw_tomogram_ctf", "transfer_function",
           "sigma0_for_snr", "noise_sigma", "measured_snr", "draw_missing_tilts",
           "TrueAcquisition"]


def dose_symmetric_order(angles_deg: np.ndarray, group_size: int = 2,
                         first_group: int | None = None, start_deg: float = 0.0) -> np.ndarray:
    """Acquisition order of ``angles_deg`` (T,) -> indices (T,) into it, first acquired first."""
    angles = np.asarray(angles_deg, dtype=np.float64)
    start = int(np.argmin(np.abs(angles - start_deg)))
    pos = [i for i in np.argsort(angles) if angles[i] > angles[start]]
    neg = [i for i in np.argsort(-angles) if angles[i] < angles[start]]
    order = [start]
    side, size = 0, max(1, group_size // 2) if first_group is None else int(first_group)
    queues = [pos, neg]
    while queues[0] or queues[1]:
        q = queues[side] if queues[side] else queues[1 - side]
        order.extend(q[:size])
        del q[:size]
        side, size = 1 - side, max(1, int(group_size))
    return np.asarray(order, dtype=np.int64)


@dataclass
class TiltScheme:
    """Tilt range/step (degrees), grouping and dose per tilt image (e/A^2)."""

    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 3.0
    group_size: int = 2
    dose_per_tilt_e_per_A2: float = 3.0
    start_deg: float = 0.0

    def angles_deg(self) -> np.ndarray:
        """Tilt angles in ascending order (T,)."""
        n = int(round((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg)) + 1
        return self.tilt_min_deg + self.tilt_step_deg * np.arange(n)

    def acquisition_rank(self) -> np.ndarray:
        """Position of each (ascending) tilt in the acquisition order, 0 first (T,)."""
        order = dose_symmetric_order(self.angles_deg(), self.group_size, start_deg=self.start_deg)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return rank

    def pre_exposure_e_per_A2(self) -> np.ndarray:
        """Cumulative dose received before each (ascending) tilt (T,)."""
        return self.acquisition_rank() * self.dose_per_tilt_e_per_A2


def draw_tomogram_ctf(n_tomograms: int, defocus_range_um: tuple[float, float],
                      astigmatism_um: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-tomogram defocus (uniform in range, um), astigmatism ``dU - dV`` and its angle.

    Returns arrays (n_tomograms,): ``defocus_u_A``, ``defocus_v_A``, ``defocus_angle_deg``.
    """
    mean_A = rng.uniform(*defocus_range_um, n_tomograms) * 1e4
    astig_A = np.full(n_tomograms, astigmatism_um * 1e4)
    angle = rng.uniform(0.0, 180.0, n_tomograms)
    return {"defocus_u_A": mean_A + astig_A / 2, "defocus_v_A": mean_A - astig_A / 2,
            "defocus_angle_deg": angle}


def transfer_function(
    defocus_u_A: torch.Tensor, defocus_v_A: torch.Tensor, defocus_angle_deg: torch.Tensor,
    dose_e_per_A2: torch.Tensor, ctf_scale: torch.Tensor, box: int, pixel_size_A: float,
    params: CtfParams, ctf: bool = True, dose_weighting: bool = True,
) -> torch.Tensor:
    """``CTF * exposure_filter * ctf_scale`` for images (...,) -> (..., D, D//2+1)."""
    h = ctf_scale.to(torch.float32)[..., None, None].expand(
        *ctf_scale.shape, box, box // 2 + 1)
    if ctf:
        h = h * ctf_2d(defocus_u_A.float(), defocus_v_A.float(), defocus_angle_deg.float(),
                       box, pixel_size_A, params)
    if dose_weighting:
        h = h * exposure_filter(dose_e_per_A2.float(), box, pixel_size_A)
    return h


def sigma0_for_snr(clean_images: torch.Tensor, snr: float) -> float:
    """Noise standard deviation at 0 degrees for a target SNR.

    ``SNR = mean_n var_box(clean_n) / sigma0^2`` where ``clean_n`` (N, D, D) are the
    noise-free images (CTF and exposure filter applied) of every particle at the tilt
    nearest 0 degrees, ``var_box`` the variance over the D x D pixels of one image, and
    ``sigma0^2`` the per-pixel variance of the white noise added to those images.
    """
    if snr <= 0:
        raise ValueError("snr must be positive")
    var = clean_images.double().flatten(1).var(dim=1, unbiased=False).mean()
    return float(torch.sqrt(var / snr))


def noise_sigma(sigma0: float, tilt_deg: np.ndarray) -> np.ndarray:
    """Per-image noise standard deviation ``sigma0 / sqrt(cos(tilt))`` (...,)."""
    cos = np.cos(np.deg2rad(np.asarray(tilt_deg, dtype=np.float64)))
    return sigma0 / np.sqrt(np.clip(cos, 1e-3, None))


def measured_snr(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """``mean var_box(clean) / mean var(noisy - clean)`` over images (N, D, D)."""
    sig = clean.double().flatten(1).var(dim=1, unbiased=False).mean()
    noise = (noisy.double() - clean.double()).flatten(1).var(dim=1, unbiased=False).mean()
    return float(sig / noise)


def draw_missing_tilts(shape: tuple[int, int], rate: float, rng: np.random.Generator,
                       tomogram: np.ndarray | None = None, per_tomogram: bool = False,
                       keep: np.ndarray | None = None) -> np.ndarray:
    """Visibility (N, T) bool: each tilt image missing independently with probability ``rate``.

    ``per_tomogram``: one draw per (tomogram, tilt) shared by the tomogram's particles
    (a bad tilt image), else one draw per (particle, tilt). ``keep`` (T,) bool marks tilts
    never dropped (e.g. none by default).
    """
    n, t = shape
    if per_tomogram and tomogram is not None:
        n_tomo = int(tomogram.max()) + 1
        visible = (rng.random((n_tomo, t)) >= rate)[tomogram]
    else:
        visible = rng.random((n, t)) >= rate
    if keep is not None:
        visible |= np.asarray(keep, bool)[None]
    return visible


@dataclass
class TrueAcquisition:
    """Exact per-particle (N, ...) and per-image (N, T) values used to form the images."""

    state: np.ndarray  # (N,) int
    coords: np.ndarray  # (N, C)
    tomogram: np.ndarray  # (N,) int
    position_A: np.ndarray  # (N, 3)
    rotation: np.ndarray  # (N, 3, 3) reference -> tomogram
    tilt_rotation: np.ndarray  # (N, T, 3, 3)
    tilt_deg: np.ndarray  # (N, T)
    dose_e_per_A2: np.ndarray  # (N, T)
    defocus_u_A: np.ndarray  # (N, T), depth offset included
    defocus_v_A: np.ndarray
    defocus_angle_deg: np.ndarray
    ctf_scale: np.ndarray
    visible: np.ndarray  # (N, T) bool
    tomogram_defocus_um: np.ndarray  # (n_tomograms,)
    # per tomogram and tilt, at the tomogram centre: (n_tomograms, T)
    tilt_defocus_u_A: np.ndarray
    tilt_defocus_v_A: np.ndarray
    tilt_defocus_angle_deg: np.ndarray
