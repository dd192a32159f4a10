"""Evidence of class differences from half-set maps (tomohet.bench.evidence)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomohet.bench.evidence import class_evidence, fsc_noise_threshold

torch.set_num_threads(1)
D = 24


def _blob(centre, sigma=1.5, amp=1.0) -> np.ndarray:
    c = np.arange(D) - D // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return amp * np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
                        / (2 * sigma**2))


def _halves(extra_amp: float, noise: float, seed: int) -> np.ndarray:
    """Two classes x two half maps: a shared core, class 1 with an extra blob at (6, -4, 2),
    independent white noise in every half map."""
    rng = np.random.default_rng(seed)
    core = _blob((0, 0, 0), 4.0) + _blob((-5, 3, 0), 2.0)
    classes = [core, core + _blob((6, -4, 2), 1.5, extra_amp)]
    return np.stack([[c + noise * rng.standard_normal((D, D, D)) for _ in range(2)]
                     for c in classes]).astype(np.float32)


def _numpy_fsc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    k = np.fft.fftfreq(D) * D
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    shell = np.round(np.sqrt(kx**2 + ky**2 + kz**2)).astype(int)
    out = []
    for s in range(D // 2 + 1):
        sel = shell == s
        num = np.real(fa[sel] * np.conj(fb[sel])).sum()
        out.append(num / np.sqrt((np.abs(fa[sel]) ** 2).sum() * (np.abs(fb[sel]) ** 2).sum()))
    return np.array(out)


def test_noise_threshold_counts_fourier_voxels_per_shell():
    k = np.fft.fftfreq(D) * D
    kz, ky, kx = np.meshgrid(k, k, k, indexing="ij")
    shell = np.round(np.sqrt(kx**2 + ky**2 + kz**2)).astype(int)
    n = np.bincount(shell.ravel())[: D // 2 + 1]
    np.testing.assert_allclose(fsc_noise_threshold(D, 3.0)[1:], 3.0 / np.sqrt(n[1:] / 2),
                               rtol=1e-6)
    np.testing.assert_allclose(fsc_noise_threshold(D, 2.0, 0.25)[1:],
                               2.0 / np.sqrt(n[1:] / 8), rtol=1e-6)


@pytest.mark.parametrize("smooth", [0.0, 1.5])
def test_difference_score_is_standard_normal_for_independent_noise(smooth):
    """White and coloured (smoothed) noise: z has mean ~0 and sd ~1 over many draws."""
    from scipy import ndimage

    from tomohet.bench.evidence import difference_z

    rng = np.random.default_rng(7)
    draws = rng.standard_normal((2, 200, 12, 12, 12))
    if smooth:
        draws = ndimage.gaussian_filter(draws, (0, 0, smooth, smooth, smooth), mode="wrap")
    z = difference_z(torch.as_tensor(draws[0]), torch.as_tensor(draws[1]))
    assert abs(z.mean()) < 0.25 and 0.8 < z.std() < 1.2


def test_difference_fsc_matches_an_independent_fsc():
    h = _halves(1.0, 0.3, seed=0)
    ev = class_evidence(h)
    np.testing.assert_allclose(ev.curves[0], _numpy_fsc(h[0, 0] - h[1, 0], h[0, 1] - h[1, 1]),
                               atol=1e-5)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equal_classes_are_within_noise(seed):
    ev = class_evidence(_halves(0.0, 0.5, seed))
    assert not ev.any_significant
    assert ev.summary().startswith("No heterogeneity found above noise")


def test_a_real_difference_is_found_where_it_is():
    ev = class_evidence(_halves(1.0, 0.1, seed=4))
    assert ev.any_significant and ev.pairs == [(0, 1)]
    peak = np.unravel_index(np.argmax(ev.where[0]), ev.where[0].shape)  # (z, y, x)
    assert np.linalg.norm(np.array(peak) - (np.array([2, -4, 6]) + D // 2)) <= 2.0
    assert "reproduce between the half sets for 1 of 1 pairs" in ev.summary()


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="K, 2, D, D, D"):
        class_evidence(np.zeros((2, 3, 8, 8, 8)))


def test_report_says_plainly_whether_classes_differ():
    import base64
    import io
    from types import SimpleNamespace

    import matplotlib.image as mpimg

    from tomohet.bench.records import MethodRun
    from tomohet.bench.report import _evidence

    ds = SimpleNamespace(pixel_size_A=10.0)
    same = MethodRun("m", "d", half_volumes=torch.as_tensor(_halves(0.0, 0.3, seed=5)))
    text = _evidence(same, ds, "m on d")
    assert "No heterogeneity found above noise" in text
    b64 = text.split("base64,")[1].split('"')[0]
    assert mpimg.imread(io.BytesIO(base64.b64decode(b64))).ndim == 3
    differ = MethodRun("m", "d", half_volumes=torch.as_tensor(_halves(1.0, 0.1, seed=5)))
    assert "reproduce between the half sets for 1 of 1 pairs" in _evidence(differ, ds, "m on d")
    assert _evidence(MethodRun("m", "d"), ds, "m on d") == ""
