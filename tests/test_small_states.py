"""Issue 12: a component of ~5% of the mass is found without the true maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from synthetic import blob_volume, make_tilt_set

from tomohet.methods.ml import ML2D, ML3D

torch.set_num_threads(1)

BOX = 24


def _complex_points(n: int = 20, seed: int = 4) -> list[tuple[float, float, float]]:
    """``n`` blob centres filling a ball of radius 6 px (the large constant complex)."""
    rng = np.random.default_rng(seed)
    pts: list[tuple[float, float, float]] = []
    while len(pts) < n:
        p = rng.uniform(-6, 6, 3)
        if np.linalg.norm(p) <= 6 and all(np.linalg.norm(p - q) > 2.5 for q in pts):
            pts.append(tuple(float(v) for v in p))
    return pts


@pytest.fixture(scope="module")
def small_component():
    base = _complex_points()
    cap = (8.0, 1.0, -1.0)  # one blob on the surface: 1 / 21 = 4.8% of the mass
    vols = torch.stack([blob_volume(BOX, base), blob_volume(BOX, base + [cap])])
    labels = np.arange(120) % 2
    particles, lab, _ = make_tilt_set(n=120, box=BOX, n_tilts=15, snr=0.3, seed=5,
                                      volumes=vols, labels=labels)
    return particles, lab


@pytest.mark.parametrize("cls", [ML2D, ML3D])
def test_ml_finds_a_five_percent_component(cls, small_component):
    particles, labels = small_component
    m = cls(n_classes=2, n_iter=6, focus_mask="auto", init="components", random_state=0,
            progress=False).fit(particles)
    assert m.discovery_ is not None and m.discovery_.focus is not None
    assert adjusted_rand_score(labels, m.predict()) > 0.9


def test_shc_finds_a_five_percent_component(small_component):
    from tomohet.methods.shc import SHC

    particles, labels = small_component
    m = SHC(n_classes=2, n_iter=5, n_runs=2, anneal_iters=2, focus_mask="auto",
            init="components", random_state=0, progress=False).fit(particles)
    assert m.discovery_ is not None and m.discovery_.focus is not None
    assert adjusted_rand_score(labels, m.predict()) > 0.9


def test_ml2d_low_snr_needs_the_discovery():
    """At SNR 0.1 random starts stay at chance on this set (ML2D defaults: ARI 0.13
    when this test was written); the focus + components start finds the component."""
    base = _complex_points()
    vols = torch.stack([blob_volume(BOX, base), blob_volume(BOX, base + [(8.0, 1.0, -1.0)])])
    particles, labels, _ = make_tilt_set(n=120, box=BOX, n_tilts=15, snr=0.1, seed=5,
                                         volumes=vols, labels=np.arange(120) % 2)
    m = ML2D(n_classes=2, n_iter=6, focus_mask="auto", init="components", random_state=0,
             progress=False).fit(particles)
    assert adjusted_rand_score(labels, m.predict()) > 0.8
