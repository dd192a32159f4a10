"""Local resolution (tomohet.physics.local_resolution) against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomohet.physics.fsc import resolution_at
from tomohet.physics.local_resolution import (
    default_window_px,
    local_resolution,
    window_centres,
    windowed_fsc,
)


def _window_np(w: int) -> np.ndarray:
    """The documented window, written out: 1 to W/4, cosine edge to 0 at W/2."""
    c = np.arange(w) - w // 2
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    e = np.clip((r - w / 4) / (w / 4), 0, 1)
    return 0.5 * (1 + np.cos(np.pi * e))


def _brute_fsc(h1: np.ndarray, h2: np.ndarray, centre: tuple[int, int, int], w: int
               ) -> np.ndarray:
    """FSC in the window around ``centre``: zero-padded slice, full complex FFT,
    shells round(|k| W) summed with np.bincount."""
    p = w // 2
    sl = tuple(slice(c, c + w) for c in centre)  # padded index of c - W/2 is c
    win = _window_np(w)
    a = np.pad(h1, p)[sl] * win
    b = np.pad(h2, p)[sl] * win
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    k = np.fft.fftfreq(w)
    shell = np.rint(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2
                            + k[None, None, :] ** 2) * w).astype(int).ravel()
    n = w // 2 + 1
    keep = shell < n
    num = np.bincount(shell[keep], (fa * fb.conj()).real.ravel()[keep], n)
    pa = np.bincount(shell[keep], (np.abs(fa) ** 2).ravel()[keep], n)
    pb = np.bincount(shell[keep], (np.abs(fb) ** 2).ravel()[keep], n)
    return num / np.sqrt(pa * pb)


def _shell_filter(shape: int, lo: float, hi: float) -> np.ndarray:
    """1 where lo <= |k| (cycles/voxel) < hi, full FFT layout."""
    k = np.fft.fftfreq(shape)
    r = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    return ((r >= lo) & (r < hi)).astype(float)


def _band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.fft.ifftn(np.fft.fftn(x) * _shell_filter(x.shape[0], lo, hi)).real


def _sphere(box: int, radius: float) -> torch.Tensor:
    c = torch.arange(box, dtype=torch.float32) - box // 2
    r = torch.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    return (r <= radius).float()


def _pair(box: int, seed: int, noise: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = _band(rng.standard_normal((box,) * 3), 0, 0.3)
    return (s + noise * rng.standard_normal(s.shape), s + noise * rng.standard_normal(s.shape))


def test_windowed_fsc_matches_brute_force_numpy():
    h1, h2 = _pair(24, 0)
    w = 12
    centres = [(12, 12, 12), (0, 5, 23), (3, 20, 9)]  # the centre, a corner, off-centre
    got = windowed_fsc(torch.tensor(h1), torch.tensor(h2), torch.tensor(centres), w)
    want = np.stack([_brute_fsc(h1, h2, c, w) for c in centres])
    np.testing.assert_allclose(got.numpy(), want, atol=2e-5)


def test_map_at_window_centres_is_the_brute_force_crossing():
    px = 3.0
    h1, h2 = _pair(24, 1)
    w, step = 12, 4
    res = local_resolution(torch.tensor(h1), torch.tensor(h2), px, window_A=w * px,
                           step_px=step).numpy()
    nodes = window_centres(24, step).tolist()
    assert 12 in nodes
    checked = 0
    for c in [(12, 12, 12), (nodes[0], nodes[1], nodes[-1]), (nodes[2], nodes[-1], 12)]:
        want = resolution_at(_brute_fsc(h1, h2, c, w), px, 0.143)
        assert res[c] == pytest.approx(want, rel=1e-4)
        checked += 1
    assert checked == 3
    assert np.isfinite(res).all()
    assert res.min() >= 2 * px - 1e-4 and res.max() <= w * px + 1e-4


def test_halves_better_resolved_on_one_side_show_it_there():
    """Common signal to Nyquist; independent noise past 0.15 cycles/voxel in the x < 16
    half of the box and past 0.30 on the other side: local resolution ~2x worse on the
    left (~6.7 px) than on the right (~3.3 px)."""
    box, px = 32, 2.0
    rng = np.random.default_rng(2)
    sig = rng.standard_normal((box,) * 3)
    left = (np.arange(box) < box // 2)[None, None, :]

    def noise() -> np.ndarray:
        return 3.0 * np.where(left, _band(rng.standard_normal(sig.shape), 0.15, 1.0),
                              _band(rng.standard_normal(sig.shape), 0.30, 1.0))

    h1, h2 = sig + noise(), sig + noise()
    mask = _sphere(box, 14)
    res = local_resolution(torch.tensor(h1), torch.tensor(h2), px, window_A=16 * px,
                           step_px=2, mask=mask).numpy()
    inside = mask.numpy() >= 0.5
    assert np.isfinite(res[inside]).all() and np.isnan(res[~inside]).all()
    x = np.arange(box)[None, None, :] + np.zeros((box,) * 3, int)
    med_left = float(np.median(res[inside & (x < 12)]))
    med_right = float(np.median(res[inside & (x >= 20)]))
    assert med_left == pytest.approx(px / 0.15, rel=0.25)
    assert med_right == pytest.approx(px / 0.30, rel=0.25)
    assert 1.5 < med_left / med_right < 2.7


def test_identical_halves_are_at_nyquist_inside_the_mask():
    box, px = 24, 1.7
    v = torch.tensor(_pair(box, 3)[0], dtype=torch.float32)
    mask = _sphere(box, 9)
    for step in (2, 3):
        res = local_resolution(v, v.clone(), px, step_px=step, mask=mask)
        inside = mask >= 0.5
        assert torch.isnan(res[~inside]).all()
        torch.testing.assert_close(res[inside], torch.full_like(res[inside], 2 * px))


def test_batch_chunk_and_default_window():
    box, px = 24, 2.0
    pairs = [_pair(box, 4, noise=0.5), _pair(box, 5, noise=1.0)]
    h1 = torch.tensor(np.stack([p[0] for p in pairs]), dtype=torch.float32)
    h2 = torch.tensor(np.stack([p[1] for p in pairs]), dtype=torch.float32)
    mask = _sphere(box, 10)
    w = default_window_px(h1, h2, px, mask)
    assert w % 2 == 0 and 12 <= w <= box
    both = local_resolution(h1, h2, px, step_px=3, mask=mask)
    assert both.shape == (2, box, box, box)
    for i in range(2):
        one = local_resolution(h1[i], h2[i], px, window_A=w * px, step_px=3, mask=mask,
                               chunk=101)
        torch.testing.assert_close(one, both[i], equal_nan=True, rtol=1e-5, atol=1e-5)
    # the noisier pair is worse resolved
    inside = mask >= 0.5
    assert both[1][inside].median() > both[0][inside].median()


def test_bad_shapes_are_refused():
    v = torch.zeros(8, 8, 8)
    with pytest.raises(ValueError, match="half maps"):
        local_resolution(v, torch.zeros(8, 8, 6), 1.0)
    with pytest.raises(ValueError, match="mask"):
        local_resolution(v, v, 1.0, window_A=4, mask=torch.ones(6, 6, 6))
    with pytest.raises(ValueError, match="pixel_size_A"):
        local_resolution(v, v, 0.0)


def test_nan_in_the_maps_is_not_reported_as_nyquist():
    box, px = 24, 1.0
    v1, v2 = (torch.tensor(x, dtype=torch.float32) for x in _pair(box, 6))
    v1[:12] = float("nan")  # the z < 12 half is unknown
    res = local_resolution(v1, v2, px, window_A=12, step_px=3)
    assert torch.isnan(res[:6]).all()  # every window there reaches the NaNs
    assert torch.isfinite(res[-3:]).all()  # windows at z >= 18 do not


def test_vectorised_crossing_matches_resolution_at_curve_by_curve():
    from tomohet.physics.local_resolution import crossing_resolution

    rng = np.random.default_rng(7)
    w, px = 16, 2.5
    curves = np.cumsum(-rng.uniform(0, 0.3, (300, w // 2 + 1)), axis=1) + 1.0
    curves[:20] = 1.0  # never below: Nyquist
    curves[20:40, 1] = 0.0  # below at the first shell: W px
    got = crossing_resolution(torch.tensor(curves), torch.full((w // 2 + 1,), 0.143,
                                                                 dtype=torch.float64), w, px)
    want = [resolution_at(c, px, 0.143) for c in curves]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
