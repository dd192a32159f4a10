"""Stand-ins for ``tests/test_bench.py``: a tiny tilt-series simulator (discrete blobs or a
blob moving along a coordinate, projected with the shared forward model, independent of
``tomohet.sim``) and test-local methods registered only inside those tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from tomohet.bench.datasets import BenchDataset
from tomohet.data.particles import Optics, TiltSeriesParticles
from tomohet.data.prepare import prepare_batch
from tomohet.data.sources import ArrayImageSource
from tomohet.methods.base import HeterogeneityMethod
from tomohet.physics.fourier import ft_to_image
from tomohet.physics.geometry import random_rotations, tilt_matrix
from tomohet.physics.projection import VolumeProjector

BASE = [(-3, 0, 0), (3, 0, 0), (0, 3, 1), (0, -3, -1)]
EXTRA = [(0, 0, 4), (4, 4, -2), (-4, 2, -3)]


# ----------------------------------------------------------------- stand-in simulator
def blob_volume(box: int, centres, sigma: float = 1.5) -> torch.Tensor:
    c = torch.arange(box, dtype=torch.float32) - box // 2
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    v = torch.zeros((box, box, box))
    for p in centres:
        v += torch.exp(-((x - p[0]) ** 2 + (y - p[1]) ** 2 + (z - p[2]) ** 2) / (2 * sigma**2))
    return v


def moving_blob_fn(box: int):
    """Volume for (state, coordinate c0 in [0, 1]): a blob sliding along x."""

    def fn(states, coords):
        return torch.stack([blob_volume(box, BASE + [(-4 + 8 * float(c[0]), 0, 3)])
                            for c in np.asarray(coords)])

    return fn


def _particles(n, box, n_tilts, images, rng, g, n_tomos=2):
    tilts = np.linspace(-45, 45, n_tilts)
    dose = np.empty(n_tilts)
    dose[np.argsort(np.abs(tilts))] = 3.0 * (np.arange(n_tilts) + 1)
    full = lambda v: np.full((n, n_tilts), v)  # noqa: E731
    return TiltSeriesParticles(
        names=[f"p{i:04d}" for i in range(n)], tomo_names=[f"tomo{i % n_tomos}" for i in range(n)],
        position_A=rng.uniform(-2000, 2000, (n, 3)), rotation=random_rotations(n, g).numpy(),
        tilt_rotation=tilt_matrix(torch.as_tensor(np.tile(tilts, (n, 1)))).numpy(),
        tilt_deg=np.tile(tilts, (n, 1)), dose_e_per_A2=np.tile(dose, (n, 1)),
        defocus_u_A=full(20000.0), defocus_v_A=full(20000.0), defocus_angle_deg=full(0.0),
        ctf_scale=full(1.0), shift_A=np.zeros((n, n_tilts, 2)), visible=full(True).astype(bool),
        image_index=np.arange(n * n_tilts).reshape(n, n_tilts),
        images=ArrayImageSource(images), optics=Optics(pixel_size_A=5.0, box=box))


def make_dataset(n=80, box=16, n_tilts=7, snr=0.05, kind="discrete", seed=0) -> BenchDataset:
    """Tiny tilt-series data set with truth; ``snr`` = image signal/noise variance."""
    rng, g = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    p0 = _particles(n, box, n_tilts, np.zeros((n * n_tilts, box, box), np.float32), rng, g)
    batch = p0.batch(np.arange(n))
    prep = prepare_batch(batch, p0.optics)
    vols, vfn, coords = None, None, None
    if kind == "discrete":
        states = rng.integers(0, 3, n)
        vols = torch.stack([blob_volume(box, BASE + [e]) for e in EXTRA])
        sl = VolumeProjector(vols).slices(batch.rotation)[torch.as_tensor(states), torch.arange(n)]
    else:
        states, coords, vfn = np.zeros(n, dtype=int), rng.uniform(0, 1, (n, 1)), moving_blob_fn(box)
        pv = vfn(states, coords)
        sl = torch.stack([VolumeProjector(pv[i]).slices(batch.rotation[i])[0] for i in range(n)])
    clean = ft_to_image(sl * prep.transfer, box)
    noisy = clean + float(clean.std()) / np.sqrt(snr) * torch.randn(clean.shape, generator=g)
    parts = _particles(n, box, n_tilts, noisy.reshape(-1, box, box).numpy(),
                       np.random.default_rng(seed), torch.Generator().manual_seed(seed))
    truth = pd.DataFrame({"particle": p0.names, "state": states, "tomogram": p0.tomo_names,
                          "x_A": p0.position_A[:, 0], "y_A": p0.position_A[:, 1],
                          "z_A": p0.position_A[:, 2]})
    if coords is not None:
        truth["c0"] = coords[:, 0]
    return BenchDataset(f"standin_{kind}", parts, truth, state_volumes=vols, volume_fn=vfn)


# ----------------------------------------------------------------- test-local methods
class DummyKMeans(HeterogeneityMethod):
    """k-means of the flattened images; random class maps (exercises every output)."""

    name = "dummy_kmeans"
    bench_params = {"n_classes": 3}

    def __init__(self, n_classes=2, random_state=None):
        self.n_classes, self.random_state = n_classes, random_state

    def fit(self, particles):
        from sklearn.cluster import KMeans

        x = np.concatenate([b.images.flatten(1).numpy() for b in particles.batches(64)])
        self.labels_ = KMeans(self.n_classes, n_init=2, random_state=self.random_state
                              ).fit_predict(x)
        d = particles.optics.box
        self.class_volumes_ = torch.randn((self.n_classes, d, d, d), generator=self._generator())
        return self

    def predict(self, particles=None):
        return self.labels_

    def particle_volumes(self, index):
        return self.class_volumes_[self.labels_[index]]


class DummyLatent(HeterogeneityMethod):
    name, kind = "dummy_latent", "continuous"

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, particles):
        self.z_ = self._rng().normal(size=(particles.n_particles, 3))
        return self

    def transform(self, particles=None):
        return self.z_


class DummyBroken(HeterogeneityMethod):
    name = "dummy_broken"

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, particles):
        raise RuntimeError("deliberately broken")
