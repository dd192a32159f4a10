"""Continuous methods do not depend on the star's row order or on the batch size.

Permuting the particles (``particles.subset(perm)``, images travel with their rows) must
give the same latent per particle name: for ``vae`` every random choice (batch
composition and order, tilt subsets, reparameterisation noise, half sets of the
consensus) is keyed by the particle's (tomogram, name); ``wmdpca`` and ``ccmatrix`` are
deterministic per particle (eigenvector signs fixed by particle, not by row). Equality
is up to float32 summation order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import make_tilt_set
from test_linear import linear_volumes, make_linear_set

from tomohet.methods.linear import WMDPCA, CCMatrix
from tomohet.methods.vae import TiltVAEMethod
from tomohet.methods.vae.train import epoch_draws
from tomohet.physics.geometry import random_rotations

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:.*latent collapse:RuntimeWarning")


def _by_name(names: list[str], z: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(names, z, strict=True))


def _assert_same_per_name(pa, za, pb, zb, atol):
    a, b = _by_name(pa.names, za), _by_name(pb.names, zb)
    diff = max(float(np.abs(a[n] - b[n]).max()) for n in a)
    scale = float(np.abs(za).max())
    assert scale > 0 and diff <= atol * scale, (diff, scale)


def test_epoch_draws_follow_names_not_rows():
    names = [f"p{i}" for i in range(40)]
    tomos = ["t0"] * 20 + ["t1"] * 20
    order, scores, eps = epoch_draws(names, tomos, seed=4, epoch=2, n_slots=7, zdim=3)
    perm = np.random.default_rng(0).permutation(40)
    o2, s2, e2 = epoch_draws([names[i] for i in perm], [tomos[i] for i in perm], 4, 2, 7, 3)
    # same values per particle, and the same visiting sequence of names
    assert torch.equal(s2, scores[perm]) and torch.equal(e2, eps[perm])
    assert [names[i] for i in order] == [names[perm[i]] for i in o2]
    o3, s3, _ = epoch_draws(names, tomos, 4, 3, 7, 3)  # another epoch: other draws
    assert not torch.equal(s3, scores) and not np.array_equal(o3, order)
    big = epoch_draws([f"q{i}" for i in range(4000)], None, 0, 0, 2, 2)
    u, e = big[1].numpy(), big[2].numpy()
    assert ((u >= 0) & (u < 1)).all() and abs(u.mean() - 0.5) < 0.02
    assert abs(e.mean()) < 0.05 and abs(e.std() - 1) < 0.05


def test_vae_latents_do_not_depend_on_row_order():
    particles, _, _ = make_tilt_set(n=96, box=20, n_tilts=9, snr=1.0, seed=5)
    kw = {"zdim": 2, "enc_dim": 16, "dec_dim": 16, "dec_layers": 2, "n_tilts": 5,
          "batch_size": 16, "n_epochs": 2, "progress": False, "random_state": 1}
    a = TiltVAEMethod(**kw).fit(particles)
    perm = np.random.default_rng(3).permutation(particles.n_particles)
    shuffled = particles.subset(perm)
    b = TiltVAEMethod(**kw).fit(shuffled)
    _assert_same_per_name(particles, a.transform(), shuffled, b.transform(), atol=1e-3)


@pytest.mark.parametrize("cls", [WMDPCA, CCMatrix])
def test_linear_latents_do_not_depend_on_row_order_or_batch_size(cls):
    mu, u = linear_volumes()
    n = 80
    z = np.random.default_rng(2).normal(size=(n, 2)) * np.array([0.6, 0.4])
    particles = make_linear_set(z, mu, u, random_rotations(n, torch.Generator().manual_seed(4)),
                                n_tilts=11, snr=2.0, seed=1)
    kw = {"n_components": 2, "cluster": None, "progress": False, "random_state": 0}
    a = cls(batch_size=32, **kw).fit(particles)
    perm = np.random.default_rng(5).permutation(n)
    shuffled = particles.subset(perm)
    b = cls(batch_size=7, **kw).fit(shuffled)
    _assert_same_per_name(particles, a.transform(), shuffled, b.transform(), atol=1e-3)
