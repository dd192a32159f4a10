"""The one back-projection entry point (physics.reconstruction.backproject): per-particle
grids, the rfft view of the sums and the one gridding correction, against independent
computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import make_tilt_set

from tomohet.data.prepare import prepare_batch, prepare_subtomo_batch
from tomohet.physics.fourier import hermitian_weights_3d
from tomohet.physics.projection import Backprojector, crop_gridding_corrected
from tomohet.physics.reconstruction import backproject, backproject_samples

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tilts():
    particles, _, _ = make_tilt_set(n=5, box=12, n_tilts=5, snr=1.0, seed=1)
    return particles


@pytest.mark.parametrize("pad", [1, 2])
def test_per_particle_grids_equal_one_hot_class_weights(tilts, pad):
    """volume_index (one grid per particle) and identity class weights (the sparse
    weighted path) insert the same sums; each grid holds only its particle."""
    prep = prepare_batch(tilts.batch(np.arange(5), "cpu"), tilts.optics)
    a = Backprojector(12, 5, pad)
    backproject(a, prep, volume_index=torch.arange(5))
    b = Backprojector(12, 5, pad)
    backproject(b, prep, class_weights=torch.eye(5))
    torch.testing.assert_close(a.data, b.data, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-6)
    one = Backprojector(12, 1, pad)
    sub = prepare_batch(tilts.batch(np.array([3]), "cpu"), tilts.optics)
    backproject(one, sub)
    torch.testing.assert_close(a.data[3], one.data[0], rtol=1e-5, atol=1e-5)


def test_subtomograms_per_particle(tilts, tmp_path):
    from tomohet.data.subtomo_cache import subtomograms_from_tilts

    sub = subtomograms_from_tilts(tilts, tmp_path / "cache", progress=False)
    prep = prepare_subtomo_batch(sub.batch(np.arange(5), "cpu"), sub.optics)
    a, b = Backprojector(12, 5, 2), Backprojector(12, 5, 2)
    backproject(a, prep, volume_index=torch.arange(5))
    backproject(b, prep, class_weights=torch.eye(5))
    torch.testing.assert_close(a.data, b.data, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-6)
    assert float(a.weight.sum()) > 0


@pytest.mark.parametrize("box,pad", [(8, 2), (7, 2), (9, 1)])
def test_rfft_grids_and_gridding_correction_match_numpy(box, pad):
    bp = Backprojector(box, 2, pad)
    g = torch.Generator().manual_seed(box)
    p = bp.padded
    bp.data = torch.randn((2, p**3), generator=g, dtype=torch.complex64)
    bp.weight = torch.rand((2, p**3), generator=g)
    d, w = bp.rfft_grids()
    full = bp.data.reshape(2, p, p, p).numpy()
    want = np.fft.ifftshift(full, axes=(-3, -2, -1))[..., : p // 2 + 1]
    np.testing.assert_array_equal(d.numpy(), want)
    assert w.shape == (2, p, p, p // 2 + 1)
    vol = torch.randn((2, p, p, p), generator=g)
    lo = p // 2 - box // 2
    x = (np.arange(box) - box // 2) / p
    s = np.sinc(x) ** 2
    env = s[:, None, None] * s[None, :, None] * s[None, None, :]
    crop = vol.numpy()[:, lo : lo + box, lo : lo + box, lo : lo + box]
    np.testing.assert_allclose(crop_gridding_corrected(vol, box).numpy(), crop / env,
                               rtol=1e-5)


@pytest.mark.parametrize("p", [8, 9])
def test_hermitian_weights_of_a_padded_grid(p):
    """Multiplicity of each 3D rfft voxel: 1 on kx = 0 (and kx = Nyquist for even p)."""
    kx = np.fft.rfftfreq(p)
    want = np.where((kx == 0) | (np.isclose(kx, 0.5)), 1.0, 2.0)
    got = hermitian_weights_3d(p).numpy()
    assert got.shape == (p, p, p // 2 + 1)
    np.testing.assert_array_equal(got, np.broadcast_to(want, got.shape))


def test_flat_samples_equal_the_prepared_batch(tilts):
    """backproject_samples on the masked pixels of a batch (the VAE's layout) inserts what
    backproject inserts for the batch, particle by particle."""
    from tomohet.physics.fourier import freq_grid_2d

    prep = prepare_batch(tilts.batch(np.arange(5), "cpu"), tilts.optics)
    a, b = Backprojector(12, 5, 2), Backprojector(12, 5, 2)
    backproject(a, prep, volume_index=torch.arange(5))
    m = prep.mask
    k2 = freq_grid_2d(12)  # (D, Dh, 2): kx, ky
    rot = prep.rotation[:, :, None, None].expand(*m.shape, 3, 3)[m]  # (M, 3, 3)
    kx, ky = k2[..., 0].expand(m.shape)[m], k2[..., 1].expand(m.shape)[m]
    freqs = kx[:, None] * rot[:, 0] + ky[:, None] * rot[:, 1]
    particle = torch.arange(5)[:, None, None, None].expand(m.shape)[m]
    w = 1.0 / prep.premult_power.expand(m.shape)[m]
    backproject_samples(b, freqs, prep.data[m], prep.transfer.expand(m.shape)[m], w,
                        kx == 0, particle)
    torch.testing.assert_close(b.data, a.data, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b.weight, a.weight, rtol=1e-4, atol=1e-5)
