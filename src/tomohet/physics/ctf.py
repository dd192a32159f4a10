"""Contrast transfer function, exposure filter and tilt weights (RELION sign conventions).

RELION's CTF at spatial frequency ``u`` (1/A) and azimuth ``phi``::

    deltaf(phi) = -(dU + dV)/2 - (dU - dV)/2 * cos(2 (phi - astig))
    chi = pi lambda deltaf u^2 + pi/2 Cs lambda^3 u^4 - phase_shift - atan(Q0 / sqrt(1 - Q0^2))
    CTF = -scale * sin(chi) * exp(-B u^2 / 4)

so an underfocused image (positive defocus) has a positive CTF at low frequency.
Exposure filter after Grant & Grigorieff (2015): critical exposure
``Ne(u) = 0.245 u^-1.665 + 2.81`` e/A^2 and attenuation ``exp(-dose / (2 Ne))``.
"""

from __future__ import annotations

import math

import torch

from tomohet.physics.fourier import freq_grid_2d

__all__ = [
    "electron_wavelength_A",
    "ctf_2d",
    "critical_exposure",
    "exposure_filter",
    "dose_mask",
    "tilt_weight",
    "depth_defocus_offset_A",
    "CtfParams",
]

GG_A, GG_B, GG_C = 0.245, -1.665, 2.81
OPTIMAL_EXPOSURE_FACTOR = 2.51284  # dose past which a frequency carries no signal


def electron_wavelength_A(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Angstrom for an accelerating voltage in kV."""
    v = voltage_kv * 1e3
    return 12.2643247 / math.sqrt(v * (1 + v * 0.978466e-6))


class CtfParams:
    """Microscope constants shared by all images of a data set (one optics group)."""

    def __init__(
        self, voltage_kv: float = 300.0, cs_mm: float = 2.7, amplitude_contrast: float = 0.07
    ) -> None:
        self.voltage_kv = float(voltage_kv)
        self.cs_mm = float(cs_mm)
        self.amplitude_contrast = float(amplitude_contrast)

    def as_dict(self) -> dict[str, float]:
        return {
            "voltage_kv": self.voltage_kv,
            "cs_mm": self.cs_mm,
            "amplitude_contrast": self.amplitude_contrast,
        }


def ctf_2d(
    defocus_u_A: torch.Tensor,
    defocus_v_A: torch.Tensor,
    defocus_angle_deg: torch.Tensor,
    box: int,
    pixel_size_A: float,
    params: CtfParams,
    phase_shift_deg: torch.Tensor | float = 0.0,
    bfactor_A2: torch.Tensor | float = 0.0,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """CTF in the rfft layout for a batch of images.

    Per-image parameters have shape (...,) (broadcastable); returns (..., D, D//2+1) on the
    device of ``defocus_u_A``.
    """
    dev, dtype = defocus_u_A.device, defocus_u_A.dtype
    k = freq_grid_2d(box, device=dev).to(dtype) / pixel_size_A  # 1/A
    kx, ky = k[..., 0], k[..., 1]
    u2 = kx**2 + ky**2
    azimuth = torch.atan2(ky, kx)
    lam = electron_wavelength_A(params.voltage_kv)
    cs_A = params.cs_mm * 1e7
    q0 = params.amplitude_contrast
    k1 = math.pi * lam
    k2 = math.pi / 2 * cs_A * lam**3
    k3 = math.atan(q0 / math.sqrt(1 - q0**2))

    def per_image(x: torch.Tensor | float) -> torch.Tensor:
        return torch.as_tensor(x, dtype=dtype, device=dev)[..., None, None]

    du, dv = per_image(defocus_u_A), per_image(defocus_v_A)
    ang = torch.deg2rad(per_image(defocus_angle_deg))
    deltaf = -(du + dv) / 2 - (du - dv) / 2 * torch.cos(2 * (azimuth - ang))
    chi = k1 * deltaf * u2 + k2 * u2**2 - torch.deg2rad(per_image(phase_shift_deg)) - k3
    env = torch.exp(-per_image(bfactor_A2) * u2 / 4)
    return -per_image(scale) * torch.sin(chi) * env


def critical_exposure(freq_per_A: torch.Tensor) -> torch.Tensor:
    """Grant & Grigorieff critical exposure (e/A^2) at spatial frequencies (1/A)."""
    f = freq_per_A.clamp_min(1e-6)
    return GG_A * f**GG_B + GG_C


def exposure_filter(
    dose_e_per_A2: torch.Tensor, box: int, pixel_size_A: float
) -> torch.Tensor:
    """Amplitude attenuation ``exp(-dose / (2 Ne(u)))`` in the rfft layout.

    (...,) -> (..., D, D//2+1).
    """
    dev, dtype = dose_e_per_A2.device, dose_e_per_A2.dtype
    u = freq_grid_2d(box, device=dev).to(dtype).norm(dim=-1) / pixel_size_A
    ne = critical_exposure(u)
    return torch.exp(-dose_e_per_A2[..., None, None] / (2 * ne))


def dose_mask(dose_e_per_A2: torch.Tensor, box: int, pixel_size_A: float) -> torch.Tensor:
    """Frequencies still carrying signal: dose below the optimal exposure ``2.51284 Ne(u)``.

    Also drops the corners past Nyquist. (...,) -> (..., D, D//2+1) bool.
    """
    dev, dtype = dose_e_per_A2.device, dose_e_per_A2.dtype
    k = freq_grid_2d(box, device=dev).to(dtype).norm(dim=-1)
    ne = critical_exposure(k / pixel_size_A)
    return (dose_e_per_A2[..., None, None] < OPTIMAL_EXPOSURE_FACTOR * ne) & (k <= 0.5)


def tilt_weight(tilt_deg: torch.Tensor) -> torch.Tensor:
    """Relative weight of a tilt image, ``cos(tilt)`` (signal falls with thickness)."""
    return torch.cos(torch.deg2rad(tilt_deg)).clamp_min(0.0)


def depth_defocus_offset_A(
    projection_rotation: torch.Tensor,
    position_A: torch.Tensor,
    handedness: float = 1.0,
) -> torch.Tensor:
    """Defocus change caused by a particle's height in the tilted specimen (RELION 5).

    ``dz = handedness * (P @ x)_z`` with ``x`` the particle position relative to the
    tomogram centre in Angstrom and ``P`` the tilt's tomogram->image rotation.
    Shapes: (..., T, 3, 3), (..., 3) -> (..., T).
    """
    return handedness * (projection_rotation[..., 2, :] * position_A[..., None, :]).sum(-1)
