"""Shared fixtures: particle sets for the IO tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from io_cases import OPT, REAL

from tomohet.data.particles import Optics, SubtomogramParticles, TiltSeriesParticles
from tomohet.data.sources import ArrayVolumeSource
from tomohet.io import (
    read_particles,
)
from tomohet.physics.geometry import random_rotations


@pytest.fixture(scope="module")
def real() -> TiltSeriesParticles:
    p = read_particles(OPT)
    assert isinstance(p, TiltSeriesParticles)
    return p


@pytest.fixture()
def real_copy(tmp_path: Path) -> Path:
    shutil.copytree(REAL, tmp_path / "real")
    return tmp_path / "real"


@pytest.fixture(scope="module")
def sim() -> TiltSeriesParticles:
    from tomohet.sim import simulate
    from tomohet.sim.presets import get_preset

    cfg = get_preset("demo", n_particles=8, n_tomograms=2, missing_tilt_rate=0.15)
    return simulate(cfg, seed=3).particles



@pytest.fixture()
def subtomos() -> SubtomogramParticles:
    rng = np.random.default_rng(0)
    n, d = 5, 16
    rot = random_rotations(n, torch.Generator().manual_seed(0), torch.float64).numpy()
    return SubtomogramParticles(
        names=[str(i + 1) for i in range(n)], tomo_names=["1", "1", "2", "2", "2"],
        position_A=rng.uniform(100, 2000, size=(n, 3)), rotation=rot,
        volumes=ArrayVolumeSource(rng.normal(size=(n, d, d, d)).astype(np.float32)),
        weights=ArrayVolumeSource(rng.uniform(size=(n, d, d, d // 2 + 1)).astype(np.float32)),
        optics=Optics(10.0, d, ctf_premultiplied=True), weight_layout="rfft")


