"""Small two-state tilt-series data sets built directly from the forward model.

Independent of ``tomohet.sim`` so method tests do not hinge on the simulator.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.data.particles import Optics, TiltSeriesParticles
from tomohet.data.sources import ArrayImageSource
from tomohet.physics.ctf import ctf_2d, exposure_filter
from tomohet.physics.fourier import ft_to_image
from tomohet.physics.geometry import random_rotations, tilt_matrix
from tomohet.physics.projection import VolumeProjector

BASE = [(3, -2, 5), (-4, 6, -1), (0, 0, -7), (6, 5, 2), (-5, -5, 3)]
EXTRA = [(7, -6, -4), (-7, 2, 6)]


def blob_volume(box: int, points, sigma: float = 2.0) -> torch.Tensor:
    c = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    vol = torch.zeros((box, box, box))
    for p in points:
        vol += torch.exp(-((x - p[0]) ** 2 + (y - p[1]) ** 2 + (z - p[2]) ** 2) / (2 * sigma**2))
    return vol


def complex_points(n: int = 20, seed: int = 4) -> list[tuple[float, float, float]]:
    """``n`` blob centres filling a ball of radius 6 px (the large constant complex)."""
    rng = np.random.default_rng(seed)
    pts: list[tuple[float, float, float]] = []
    while len(pts) < n:
        p = rng.uniform(-6, 6, 3)
        if np.linalg.norm(p) <= 6 and all(np.linalg.norm(p - q) > 2.5 for q in pts):
            pts.append(tuple(float(v) for v in p))
    return pts


def two_state_volumes(box: int) -> torch.Tensor:
    return torch.stack([blob_volume(box, BASE), blob_volume(box, BASE + EXTRA)])


def make_tilt_set(n: int = 200, box: int = 24, n_tilts: int = 21, snr: float = 0.1,
                  pixel_size_A: float = 8.0, seed: int = 0, volumes: torch.Tensor | None = None,
                  labels: np.ndarray | None = None):
    """(particles, labels, volumes): ``snr`` is the 0-degree image SNR (variance ratio)."""
    g = torch.Generator().manual_seed(seed)
    vols = two_state_volumes(box) if volumes is None else volumes
    lab = (torch.randint(0, vols.shape[0], (n,), generator=g) if labels is None
           else torch.as_tensor(labels))
    rot = random_rotations(n, g)
    tilts = torch.linspace(-60, 60, n_tilts)
    dose = torch.zeros(n_tilts)
    dose[torch.argsort(tilts.abs())] = torch.arange(n_tilts, dtype=torch.float32) * 3.0
    p_tilt = tilt_matrix(tilts)
    full = p_tilt[None] @ rot[:, None]
    slices = VolumeProjector(vols).slices(full)[lab, torch.arange(n)]
    du = torch.full((n, n_tilts), 25000.0) + torch.randn(n, 1, generator=g) * 3000
    optics = Optics(pixel_size_A, box)
    ctf = ctf_2d(du, du, torch.zeros(n, n_tilts), box, pixel_size_A, optics.ctf_params)
    expo = exposure_filter(dose.expand(n, n_tilts), box, pixel_size_A)
    img = ft_to_image(slices * ctf * expo, box)
    sigma = (img[:, n_tilts // 2].var() / snr).sqrt() if snr > 0 else torch.tensor(0.0)
    cos = torch.cos(torch.deg2rad(tilts))[None, :, None, None]
    img = img + torch.randn(img.shape, generator=g) * sigma / cos.sqrt()
    particles = TiltSeriesParticles(
        names=[f"ts_{i // 50:02d}/{i + 1}" for i in range(n)],
        tomo_names=[f"ts_{i // 50:02d}" for i in range(n)],
        position_A=np.zeros((n, 3)), rotation=rot.double().numpy(),
        tilt_rotation=p_tilt[None].expand(n, -1, -1, -1).double().numpy().copy(),
        tilt_deg=tilts[None].expand(n, -1).double().numpy().copy(),
        dose_e_per_A2=dose[None].expand(n, -1).double().numpy().copy(),
        defocus_u_A=du.double().numpy(), defocus_v_A=du.double().numpy(),
        defocus_angle_deg=np.zeros((n, n_tilts)), ctf_scale=np.ones((n, n_tilts)),
        shift_A=np.zeros((n, n_tilts, 2)), visible=np.ones((n, n_tilts), dtype=bool),
        image_index=np.arange(n * n_tilts).reshape(n, n_tilts),
        images=ArrayImageSource(img.reshape(n * n_tilts, box, box).numpy()), optics=optics,
        meta={"format": "relion5"},
    )
    return particles, lab.numpy(), vols
