"""The one noise model (physics.forward.NoiseModel), checked against plain numpy sums, and
the VAE's noise power as a function of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomohet.physics.forward import NoiseModel, PreparedBatch

torch.set_num_threads(1)


def _numpy_shells(box: int) -> tuple[np.ndarray, np.ndarray]:
    """Shell index round(|k| D) (clamped to the corner shell) and Hermitian multiplicity of
    every rfft pixel, from numpy's frequencies."""
    ky = np.fft.fftfreq(box)[:, None]
    kx = np.fft.rfftfreq(box)[None, :]
    shell = np.minimum(np.round(np.sqrt(kx**2 + ky**2) * box).astype(int), box // 2 + 1)
    herm = np.where((kx == 0) | ((box % 2 == 0) & (kx == 0.5)), 1.0, 2.0)
    return shell, np.broadcast_to(herm, shell.shape)


def _prepared(b: int, t: int, box: int, seed: int) -> tuple[PreparedBatch, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dh = box // 2 + 1
    shape = (b, t, box, dh)
    mask = torch.rand(shape, generator=g) > 0.3
    prep = PreparedBatch(
        data=torch.zeros(shape, dtype=torch.complex64), transfer=torch.ones(shape),
        mask=mask, premult_power=0.2 + torch.rand(shape, generator=g),
        group=torch.randint(0, 3, (b, t), generator=g), rotation=torch.eye(3).expand(b, t, 3, 3),
        visible=torch.ones((b, t), dtype=torch.bool))
    return prep, torch.rand(shape, generator=g) * 10


@pytest.mark.parametrize("box", [12, 13])
def test_noise_model_is_the_weighted_mean_per_group_and_shell(box):
    prep, r2 = _prepared(4, 5, box, seed=box)
    noise = NoiseModel(box, 3)
    noise.accumulate(r2, prep)
    noise.update()
    shell, herm = _numpy_shells(box)
    m, pp, grp = prep.mask.numpy(), prep.premult_power.numpy(), prep.group.numpy()
    r = r2.numpy()
    num = np.zeros((3, box // 2 + 2))
    den = np.zeros_like(num)
    for i in range(4):
        for j in range(5):
            for y in range(box):
                for x in range(box // 2 + 1):
                    if m[i, j, y, x]:
                        w = herm[y, x]
                        num[grp[i, j], shell[y, x]] += w * r[i, j, y, x] / pp[i, j, y, x]
                        den[grp[i, j], shell[y, x]] += w
    want = num / np.maximum(den, 1e-30) / 2  # sigma2 holds E|n|^2 / 2
    ok = den > 0
    assert ok.sum() > 10
    np.testing.assert_allclose(noise.sigma2.numpy()[ok], want[ok], rtol=1e-5)
    np.testing.assert_allclose(noise.shell_power(1).numpy(), 2 * noise.sigma2[1].numpy())


def test_flat_samples_equal_the_prepared_batch():
    box = 12
    prep, r2 = _prepared(3, 4, box, seed=1)
    a, b = NoiseModel(box, 3), NoiseModel(box, 3)
    a.accumulate(r2, prep)
    m = prep.mask
    g = prep.group[:, :, None, None].expand(m.shape)
    b.accumulate_samples(r2[m], a.shell.expand(m.shape)[m], a.herm.expand(m.shape)[m], g[m],
                         prep.premult_power[m])
    a.update()
    b.update()
    torch.testing.assert_close(a.sigma2, b.sigma2, rtol=1e-6, atol=0)


def test_shells_without_data_are_kept_or_interpolated():
    box = 12
    s = box // 2 + 2
    shell = torch.tensor([1, 2, 5, 5])
    power = torch.tensor([4.0, 8.0, 20.0, 20.0])
    keep = NoiseModel(box, 1)
    keep.sigma2 = torch.full_like(keep.sigma2, 7.0)  # an estimate, kept
    keep.accumulate_samples(power, shell, torch.ones(4))
    keep.update()
    # shells 0, 3, 4, 6, 7 had no data: kept as they were (not halved), the rest E|n|^2/2
    want_keep = np.full(s, 7.0)
    want_keep[[1, 2, 5]] = [2.0, 4.0, 10.0]
    np.testing.assert_allclose(keep.sigma2[0].numpy(), want_keep)
    interp = NoiseModel(box, 1)
    interp.accumulate_samples(power, shell, torch.ones(4))
    interp.update(fill="interpolate")
    want = np.interp(np.arange(s), [1, 2, 5], [4.0, 8.0, 20.0])
    np.testing.assert_allclose(interp.shell_power().numpy(), want, rtol=1e-6)
    assert not interp.has_samples
    with pytest.raises(ValueError, match="fill"):
        interp.update(fill="nearest")


def test_vae_noise_power_is_the_shared_model_on_its_residuals():
    """The VAE's noise power is E|X - H V0|^2 / M^2 per shell, Hermitian-weighted, on the
    cached samples: recomputed here from the cache with numpy."""
    from synthetic import make_tilt_set

    from tomohet.methods.vae.data import build_cache
    from tomohet.methods.vae.reference import iterate_all, noise_power
    from tomohet.physics.projection import VolumeProjector

    particles, _, vols = make_tilt_set(n=12, box=16, n_tilts=5, snr=1.0, seed=4)
    cache = build_cache(particles, np.arange(12), particles.visible)
    v0 = VolumeProjector(vols[0])
    got = noise_power(cache, v0, torch.device("cpu"), batch=5).numpy()
    num = np.zeros(16 // 2 + 2)
    den = np.zeros_like(num)
    shell_np, herm_np = _numpy_shells(16)
    for _rows, pb in iterate_all(cache, 7):
        pred = (v0.sample(pb.freq)[0] * pb.transfer).numpy()
        r2 = np.abs(pb.data.numpy() - pred) ** 2
        y, x = np.divmod(pb.pix.numpy(), 16 // 2 + 1)
        np.add.at(num, shell_np[y, x], herm_np[y, x] * r2)
        np.add.at(den, shell_np[y, x], herm_np[y, x])
    ok = den > 0
    np.testing.assert_allclose(got[ok], num[ok] / den[ok], rtol=1e-4)
    idx = np.arange(len(num))
    np.testing.assert_allclose(got, np.interp(idx, idx[ok], num[ok] / den[ok]), rtol=1e-4)
