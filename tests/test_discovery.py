"""Kernels of tomohet.methods.discovery against independent computations."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from tomohet.methods.discovery import (
    component_labels,
    crop_to_small,
    focus_from_variance,
    small_box_for,
    upsample_mask,
    variance_map,
)


def _coords(d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = torch.arange(d, dtype=torch.float64) - d // 2
    return torch.meshgrid(c, c, c, indexing="ij")


def test_small_box_for():
    assert small_box_for(32, 13.0, 52.0) == 16
    assert small_box_for(48, 12.0, 48.0) == 24
    assert small_box_for(32, 13.0, 1000.0) == 8  # floor
    assert small_box_for(32, 13.0, 1.0) == 32  # never above the box


def test_crop_to_small_is_exact_for_band_limited_waves():
    big, small = 32, 16
    z, y, x = _coords(big)
    vol = torch.cos(2 * torch.pi * (3 * x + 2 * z) / big) + 0.5 * torch.sin(
        2 * torch.pi * 4 * y / big)
    grid = torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(vol)))
    out = crop_to_small(grid[None].to(torch.complex64), small)[0].double()
    zs, ys, xs = _coords(small)
    expect = (big / small) ** 3 * (torch.cos(2 * torch.pi * (3 * xs + 2 * zs) / small)
                                   + 0.5 * torch.sin(2 * torch.pi * 4 * ys / small))
    torch.testing.assert_close(out, expect, atol=1e-3 * expect.abs().max(), rtol=0)


def test_upsample_mask_keeps_values_and_centre():
    torch.testing.assert_close(upsample_mask(torch.full((8, 8, 8), 0.5), 24),
                               torch.full((24, 24, 24), 0.5), atol=1e-5, rtol=0)
    z, y, x = _coords(12)
    blob = torch.exp(-((x - 2) ** 2 + y**2 + (z + 1) ** 2) / (2 * 1.5**2)).float()
    up = upsample_mask(blob, 36)
    peak = np.unravel_index(int(up.argmax()), up.shape)
    assert peak == (36 // 2 - 3, 36 // 2, 36 // 2 + 6)  # (z, y, x): offsets x3


def _maps_with_component(n=400, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn((n, d, d, d), generator=g)
    present = torch.rand(n, generator=g) < 0.5
    z, y, x = _coords(d)
    bump = 1.6 * torch.exp(-((x - 3) ** 2 + (y + 2) ** 2 + z**2) / 4.0).float()
    maps = maps + present[:, None, None, None] * bump
    return maps, present.numpy().astype(int), bump


def test_variance_map_finds_the_varying_region():
    maps, _, bump = _maps_with_component()
    var, z = variance_map(maps)
    np.testing.assert_allclose(var.numpy(), maps.numpy().var(0, ddof=1), rtol=1e-4, atol=1e-5)
    d = maps.shape[-1]
    peak = np.unravel_index(int(z.argmax()), z.shape)
    assert peak == (d // 2, d // 2 - 2, d // 2 + 3)
    assert float(z.max()) > 6  # excess 0.64 of the floor, var sd sqrt(2/400) = 0.07
    far = (bump < 1e-3) & (z != 0)
    assert abs(float(z[far].median())) < 0.3  # the noise floor is removed


def test_focus_from_variance_and_none_without_heterogeneity():
    maps, _, bump = _maps_with_component()
    _, z = variance_map(maps)
    mask = focus_from_variance(z)
    assert mask is not None
    excess = bump**2  # the variance the component adds
    assert float((mask * excess).sum() / excess.sum()) > 0.8
    assert float(mask.mean()) < 0.1
    noise_only = torch.randn((400, 12, 12, 12), generator=torch.Generator().manual_seed(3))
    assert focus_from_variance(variance_map(noise_only)[1], threshold=6.0) is None


def test_component_labels_recover_groups_and_ignore_row_order():
    maps, truth, bump = _maps_with_component(n=300, seed=1)
    mask = (bump > 0.05).float()
    order = np.arange(len(truth))
    labels = component_labels(maps, mask, 2, order, seed=0)
    assert adjusted_rand_score(truth, labels) > 0.9
    perm = np.random.default_rng(0).permutation(len(truth))
    # the same particles in another row order, with the name-defined order following them
    inv = np.argsort(perm)
    labels_p = component_labels(maps[perm], mask, 2, inv[order], seed=0)
    np.testing.assert_array_equal(labels_p, labels[perm])


def _discovery(region: str, z_max: float = 2.0):
    from tomohet.methods.discovery import Discovery

    z = torch.zeros((8, 8, 8))
    z[4, 4, 4] = z_max
    focus = torch.ones((16, 16, 16)) * 0.1 if region == "local" else None
    return Discovery(focus, np.zeros(4, dtype=np.int64), z, z.clone(), 8, 10.0, region)


def test_run_summary_says_no_heterogeneity_plainly():
    """Nothing above noise in the z-map -> the plain statement, whatever the classes;
    equal classes (half maps of one map + independent noise) -> the same; classes that
    differ in both half sets -> heterogeneity found."""
    from tomohet.methods.evidence import NO_HETEROGENEITY, run_summary

    g = torch.Generator().manual_seed(0)
    base = torch.randn((16, 16, 16), generator=g)
    equal = base + 0.5 * torch.randn((2, 2, 16, 16, 16), generator=g)
    summary, _ = run_summary(_discovery("none"), equal, 10.0)
    assert not summary["heterogeneity_found"]
    assert NO_HETEROGENEITY in summary["statement"].lower()
    summary, ev = run_summary(_discovery("local", 9.0), equal, 10.0)
    assert ev is not None and not ev.any_significant
    assert not summary["heterogeneity_found"]
    assert NO_HETEROGENEITY in summary["statement"].lower()
    differ = equal.clone()
    differ[1] += 2.0 * torch.randn((16, 16, 16), generator=g)  # same change in both halves
    summary, _ = run_summary(_discovery("local", 9.0), differ, 10.0)
    assert summary["heterogeneity_found"]
    assert NO_HETEROGENEITY not in summary["statement"].lower()
    assert summary["discovery"]["region"] == "local"
