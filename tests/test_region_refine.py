"""Issue 12: a region's mask redrawn from its own split (methods/region_refine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from tomohet.methods.region_refine import (
    difference_z,
    downsample_mask,
    redrawn_region,
)

D = 16


def _ball(centre, radius):
    c = np.arange(D)
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    r2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
    return torch.from_numpy((r2 <= radius**2).astype(np.float32))


def _sums(maps: np.ndarray, post: np.ndarray, halves: np.ndarray):
    """Posterior-weighted sums per half and class, by loops (the reference)."""
    sums = np.zeros((2, 2, D, D, D))
    w = np.zeros((2, 2))
    for n in range(len(maps)):
        for c in (0, 1):
            sums[halves[n], c] += post[n, c] * maps[n]
            w[halves[n], c] += post[n, c]
    return torch.from_numpy(sums), torch.from_numpy(w)


def _data(n=400, amplitude=0.6, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    blob = _ball((5, 8, 10), 2).numpy()
    maps = rng.standard_normal((n, D, D, D)) + amplitude * labels[:, None, None, None] * blob
    return maps, labels, blob, np.arange(n) % 2


def test_difference_z_matches_a_direct_computation_and_peaks_on_the_component():
    maps, labels, blob, halves = _data()
    sums, w = _sums(maps, np.eye(2)[labels], halves)
    z = difference_z(sums, w, sigma=1.0, radius=D / 2 - 1).numpy()
    # the same by hand: each half's class means, their difference, smoothed with scipy
    # (periodic Gaussian), noise from the halves' disagreement
    diff = [maps[(halves == h) & (labels == 1)].mean(0) - maps[(halves == h) & (labels == 0)]
            .mean(0) for h in (0, 1)]
    sig = ndimage.gaussian_filter((diff[0] + diff[1]) / 2, 1.0, mode="wrap")
    noi = ndimage.gaussian_filter((diff[0] - diff[1]) / 2, 1.0, mode="wrap")
    c = np.arange(D) - D // 2
    zz, yy, xx = np.meshgrid(c, c, c, indexing="ij")
    inside = np.round(np.sqrt(zz**2 + yy**2 + xx**2)) <= D / 2 - 1
    ref = np.where(inside, np.abs(sig) / noi[inside].std(), 0.0)
    np.testing.assert_allclose(z, ref, atol=0.05 * ref.max())
    assert blob[np.unravel_index(z.argmax(), z.shape)] == 1  # the peak is on the component
    assert z.max() > 8 and np.median(z[inside & (blob == 0)]) < 1.2


def test_difference_z_is_unit_free_and_empty_without_both_classes():
    maps, labels, _, halves = _data(n=200, seed=1)
    sums, w = _sums(maps, np.eye(2)[labels], halves)
    z = difference_z(sums, w)
    np.testing.assert_allclose(difference_z(sums * 7.5, w), z, rtol=1e-5, atol=1e-5)
    w0 = w.clone()
    w0[1, 0] = 0.0
    assert float(difference_z(sums, w0).abs().max()) == 0.0


def test_difference_z_of_a_split_of_noise_has_no_strong_peak():
    """Labels unrelated to the maps: the difference is noise, the z-map stays near its
    noise scale (sd ~1 by construction)."""
    maps, _, _, halves = _data(amplitude=0.0, seed=2)
    random = np.random.default_rng(3).integers(0, 2, len(maps))
    sums, w = _sums(maps, np.eye(2)[random], halves)
    z = difference_z(sums, w)
    assert float(z.max()) < 5.0


def _two_blobs():
    z = torch.zeros((D, D, D))
    a, b = _ball((5, 5, 5), 2), _ball((10, 11, 10), 2)
    return z + 9.0 * a + 6.0 * b + 0.5, a, b


def test_redrawn_region_takes_the_clusters_the_old_mask_touches():
    z, a, b = _two_blobs()
    old = torch.zeros((D, D, D))
    old[5, 5, 6] = 1.0  # one voxel of blob a: a poor, partial mask
    new = redrawn_region(z, old, dilate=0)
    assert new is not None
    core = (new > 0.5).numpy()
    assert core[a.numpy() > 0].mean() == 1.0  # all of blob a
    assert not core[b.numpy() > 0].any()  # none of the other cluster
    # kept out of another region's mask
    half = a.clone()
    half[:5] = 0
    kept = redrawn_region(z, old, dilate=0, exclude=half)
    assert kept is not None and not (kept.numpy() > 0.5)[half.numpy() > 0].any()


@pytest.mark.parametrize("case", ["weak", "outside", "too large"])
def test_redrawn_region_keeps_the_old_mask_when_it_has_nothing_to_go_on(case):
    z, a, _ = _two_blobs()
    old = a.clone()
    if case == "weak":
        z = torch.full((D, D, D), 2.0)  # nothing above the threshold of 3
    elif case == "outside":
        old = torch.zeros((D, D, D))
    else:
        z = torch.full((D, D, D), 9.0)  # the whole box "differs": no region
    assert redrawn_region(z, old) is None


def test_downsample_mask_averages_blocks():
    big = torch.zeros((32, 32, 32))
    big[:2, :2, :2] = 1.0
    small = downsample_mask(big, 16)
    assert small.shape == (16, 16, 16)
    assert float(small[0, 0, 0]) == pytest.approx(1.0) and float(small.sum()) == 1.0


def test_refine_region_redraws_a_partial_mask_around_the_component():
    """A two-component set (box 24, 4.8% of the mass each): given the true split of
    component A and a mask that only grazes it, the redrawn mask covers A's centre and
    not B's; given a split unrelated to the data, nothing is redrawn."""
    from synthetic import blob_volume, complex_points, make_tilt_set

    from tomohet.data.keys import half_sets
    from tomohet.methods.discovery import discover_with
    from tomohet.methods.em import EMEngine
    from tomohet.methods.ml import ML2D
    from tomohet.methods.region_refine import refine_region

    base = complex_points()
    cap_a, cap_b = (8.0, 1.0, -1.0), (-8.0, -1.0, 1.0)  # x, y, z from the centre
    vols = torch.stack([blob_volume(24, base + extra) for extra in
                        ([], [cap_a], [cap_b], [cap_a, cap_b])])
    particles, labels, _ = make_tilt_set(n=128, box=24, n_tilts=11, snr=0.3, seed=5,
                                         volumes=vols, labels=np.arange(128) % 4)
    clf = ML2D(n_classes=4, random_state=0, progress=False, batch_size=32)
    cpu = torch.device("cpu")
    ref_mask, _ = clf._masks(particles, cpu)
    halves = half_sets(particles.names, particles.tomo_names, 0, particles.table)
    plain = EMEngine(particles, clf._config(cpu), np.arange(128), ref_mask)
    setup = discover_with(plain, 4, "auto", "components", halves, 0)
    a_present = np.isin(labels, [1, 3]).astype(int)
    centre_a, centre_b = (11, 13, 20), (13, 11, 4)  # (z, y, x) voxels
    c = np.arange(24)
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    graze = torch.from_numpy(((z - 11) ** 2 + (y - 13) ** 2 + (x - 23) ** 2 <= 4)
                             .astype(np.float32))  # the outer edge of cap A only
    new = refine_region(setup, np.eye(2)[a_present], halves, graze)
    assert new is not None
    assert float(new[centre_a]) > 0.5 and float(new[centre_b]) < 0.1
    assert float(new.mean()) < 0.1
    unrelated = np.random.default_rng(0).integers(0, 2, 128)
    assert refine_region(setup, np.eye(2)[unrelated], halves, graze) is None


def test_same_region_compares_cores():
    from tomohet.methods.region_refine import same_region

    a = _ball((8, 8, 8), 3)
    soft = a * 0.8  # the same core, softer edges
    assert same_region(a, soft)
    assert not same_region(a, _ball((8, 8, 11), 3))
    assert same_region(torch.zeros((D, D, D)), torch.zeros((D, D, D)))


@pytest.mark.parametrize("grow_for, expected_splits", [(0, 1), (1, 2), (2, 3), (9, 4)])
def test_refined_split_redraws_until_the_mask_stops_changing(grow_for, expected_splits):
    """The mask grows ``grow_for`` times, then stays: one split, one more per change, at
    most MAX_REDRAWS more; the history tags earlier splits "region search" and the
    last "region split"; the final mask is the last one split in."""
    from types import SimpleNamespace

    from tomohet.methods.factorial import MAX_REDRAWS, _refined_split

    assert MAX_REDRAWS == 3
    n = 10
    setup = SimpleNamespace(plain=SimpleNamespace(index=np.arange(n)))
    masks_seen = []

    def split(members, mask, init):
        masks_seen.append(mask)
        return np.eye(2)[np.arange(n) % 2], [{"log_likelihood": 1.0}], torch.ones(1)

    def redraw(post, mask, exclude):
        radius = int(mask.sum() > 0) + len(masks_seen)
        return _ball((8, 8, 8), min(radius, grow_for + 1)) if grow_for else mask

    post, history, _, final = _refined_split(setup, split, _ball((8, 8, 8), 1),
                                             np.zeros(n, int), redraw, [])
    assert len(masks_seen) == expected_splits
    assert [h["stage"] for h in history] == ["region search"] * (expected_splits - 1) + [
        "region split"]
    assert history[-1]["redrawn"] == expected_splits - 1
    assert torch.equal(final, masks_seen[-1])
    # without redraw: one split, its mask
    masks_seen.clear()
    _, history, _, final = _refined_split(setup, split, _ball((8, 8, 8), 1),
                                          np.zeros(n, int), None, [])
    assert len(masks_seen) == 1 and history[0]["stage"] == "region split"
