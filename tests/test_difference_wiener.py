"""The classes' differences Wiener-filtered by their own FSC (issue 12):
:func:`tomohet.physics.reconstruction.shrink_class_differences`."""

import numpy as np
import torch

from tomohet.physics.reconstruction import shrink_class_differences

D = 16


def _shell_power(vol: torch.Tensor) -> np.ndarray:
    """Power per integer shell by numpy's own FFT (independent of tomohet.physics)."""
    f = np.fft.fftn(vol.double().numpy())
    k = np.fft.fftfreq(D) * D
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    sh = np.minimum(np.round(r).astype(int), D // 2)
    return np.bincount(sh.ravel(), (np.abs(f) ** 2).ravel(), minlength=D // 2 + 1)


def _lowpass(vol: torch.Tensor, cut: float) -> torch.Tensor:
    f = np.fft.fftn(vol.double().numpy())
    k = np.fft.fftfreq(D) * D
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    return torch.from_numpy(np.real(np.fft.ifftn(f * (r <= cut)))).float()


def _halves(common, diffs, noise_sd, gen):
    """half maps (2K, D, D, D): class c half h = common + diffs[c] + noise."""
    out = []
    for dc in diffs:
        for _ in range(2):
            out.append(common + dc + noise_sd * torch.randn(D, D, D, generator=gen))
    return torch.stack(out)


def test_noise_only_differences_shrink_to_the_mean_and_real_ones_stay():
    gen = torch.Generator().manual_seed(0)
    common = _lowpass(torch.randn(D, D, D, generator=gen), 6) * 20
    # class 1 differs by a low-resolution blob; classes share everything else
    blob = _lowpass(torch.randn(D, D, D, generator=gen), 2.5) * 8
    half = _halves(common, [torch.zeros(D, D, D), blob], 1.0, gen)
    maps = 0.5 * (half[0::2] + half[1::2])
    w = torch.tensor([3.0, 1.0])
    out, curves = shrink_class_differences(maps, half, w)
    pi = w / w.sum()
    mean = (pi[:, None, None, None] * maps).sum(0)
    before = _shell_power(maps[1] - mean)
    after = _shell_power(out[1] - (pi[:, None, None, None] * maps).sum(0))
    truth = _shell_power(blob * (1 - pi[1]))
    lo, hi = slice(1, 3), slice(5, D // 2 + 1)
    # where the difference is real (shells 1-2), it is kept; where it is noise, removed
    assert np.all(after[lo] > 0.7 * before[lo])
    assert after[hi].sum() < 0.25 * before[hi].sum()
    # what is left past the blob's band is at most what noise gets through, not the blob
    assert truth[hi].sum() < 1e-3 * truth[lo].sum()
    # the difference FSC: high at the blob's shells, near 0 past them
    assert float(curves[1, 1]) > 0.8 and abs(float(curves[1, 6:].mean())) < 0.2
    # the weighted mean of the classes is not filtered: where both classes are equal in
    # truth, the maps stay within noise of the common part at every shell
    assert _shell_power(out[0] - common)[hi].sum() < _shell_power(maps[0] - common)[hi].sum()


def test_gain_per_shell_matches_the_fsc_formula():
    """With noise-free halves the difference FSC is 1 at every shell with power: maps
    unchanged (gain 0.999); with T=1 and an FSC of f the gain is 2f / (1 + f)."""
    gen = torch.Generator().manual_seed(1)
    common = torch.randn(D, D, D, generator=gen)
    diffs = [torch.zeros(D, D, D), torch.randn(D, D, D, generator=gen)]
    half = _halves(common, diffs, 0.0, gen)
    maps = half[0::2]
    out, curves = shrink_class_differences(maps, half, torch.tensor([1.0, 1.0]))
    assert torch.allclose(curves[:, 1:], torch.ones_like(curves[:, 1:]), atol=1e-4)
    assert torch.allclose(out, maps, atol=2e-3 * float(maps.abs().max()))


def test_empty_class_and_single_class_untouched():
    gen = torch.Generator().manual_seed(2)
    half = torch.randn(6, D, D, D, generator=gen)
    maps = 0.5 * (half[0::2] + half[1::2])
    out, curves = shrink_class_differences(maps, half, torch.tensor([1.0, 0.0, 2.0]))
    assert torch.equal(out[1], maps[1]) and float(curves[1].abs().sum()) == 0.0
    assert not torch.equal(out[0], maps[0])  # two live classes: filtered
    one, c1 = shrink_class_differences(maps, half, torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(one, maps) and float(c1.abs().sum()) == 0.0


def test_tau_fudge_keeps_more_of_the_difference():
    gen = torch.Generator().manual_seed(3)
    common = torch.randn(D, D, D, generator=gen)
    blob = _lowpass(torch.randn(D, D, D, generator=gen), 4) * 2
    half = _halves(common, [torch.zeros(D, D, D), blob], 1.0, gen)
    maps = 0.5 * (half[0::2] + half[1::2])
    w = torch.tensor([1.0, 1.0])
    mean = maps.mean(0)
    p1 = _shell_power(shrink_class_differences(maps, half, w, 1.0)[0][1] - mean).sum()
    p4 = _shell_power(shrink_class_differences(maps, half, w, 4.0)[0][1] - mean).sum()
    p0 = _shell_power(maps[1] - mean).sum()
    assert p1 < p4 < p0
