"""Noise-free image formation of simulated particles from their exact acquisition values.

Image of tilt ``t`` of particle ``n`` (rfft layout)::

    X_nt = irfft( P_n(R_nt) * CTF_nt * E(dose_nt) * ctf_scale_nt ),   R_nt = tilt_t @ A_n,

with ``P_n(R)`` the transform of the particle's projection (the heterogeneity model's
:meth:`~tomohet.sim.states.HeterogeneityModel.project`). Noise is added by
:mod:`tomohet.sim.simulate`.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.data.particles import Optics
from tomohet.physics.fourier import ft_to_image
from tomohet.sim.acquisition import TrueAcquisition, transfer_function
from tomohet.sim.config import SimulationConfig
from tomohet.sim.states import HeterogeneityModel

__all__ = ["render_clean", "optics_for"]


def optics_for(config: SimulationConfig) -> Optics:
    """The :class:`~tomohet.data.particles.Optics` a simulation's images are made with."""
    return Optics(pixel_size_A=config.pixel_size_A, box=config.box, voltage_kv=config.voltage_kv,
                  cs_mm=config.cs_mm, amplitude_contrast=config.amplitude_contrast)


def render_clean(model: HeterogeneityModel, acq: TrueAcquisition, index: np.ndarray,
                 config: SimulationConfig,
                 tilts: np.ndarray | list[int] | None = None) -> torch.Tensor:
    """Noise-free images of particles ``index`` (B,) at tilt slots ``tilts`` (T',) (default
    all) -> (B, T', D, D), using the true poses and CTF parameters."""
    idx = np.asarray(index, dtype=np.int64)
    t = np.arange(acq.tilt_deg.shape[1]) if tilts is None else np.asarray(tilts)
    sel = np.ix_(idx, t)
    full = torch.as_tensor(acq.tilt_rotation[sel] @ acq.rotation[idx][:, None],
                           dtype=torch.float32)
    slices = model.project(acq.state[idx], acq.coords[idx], full)

    def f(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a[sel], dtype=torch.float32)

    h = transfer_function(f(acq.defocus_u_A), f(acq.defocus_v_A), f(acq.defocus_angle_deg),
                          f(acq.dose_e_per_A2), f(acq.ctf_scale), config.box,
                          config.pixel_size_A, optics_for(config).ctf_params, config.ctf,
                          config.dose_weighting)
    return ft_to_image(slices * h, box=config.box)
