"""Issue 12: the held-out test of a further region (methods/region_test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tomohet.methods.region_test import gain_z, heldout_test, sub_halves


def test_gain_z_is_the_one_sided_normal_test_of_the_mean():
    g = np.random.default_rng(0).normal(0.1, 1.0, 400)
    z, p = gain_z(g)
    t = stats.ttest_1samp(g, 0.0).statistic  # the same statistic, computed by scipy
    assert z == pytest.approx(t, rel=1e-10)
    assert p == pytest.approx(stats.norm.sf(t), rel=1e-9)
    assert gain_z(np.zeros(10)) == (0.0, 1.0) and gain_z(np.ones(1)) == (0.0, 1.0)


def _gaussian_models(x: np.ndarray, seen: list[set[int]]):
    """A 1-D two-class Gaussian mixture against its own mean, unit variance: fits
    record the particles they saw."""
    def fit2(train, labels):
        seen.append(set(train.tolist()))
        return [x[train][labels == c].mean() if (labels == c).any() else 0.0
                for c in (0, 1)], np.bincount(labels, minlength=2) / len(labels)

    def evaluate(test, two):
        means, pri = two
        mix = sum(p * stats.norm.pdf(x[test], m) for m, p in zip(means, pri, strict=True))
        mean = sum(p * m for m, p in zip(means, pri, strict=True))
        return np.log(mix) - stats.norm.logpdf(x[test], mean)

    return fit2, evaluate


def _labels_per_half(x, halves):
    """k-means in 1-D, within each half only: the sign about the half's median."""
    out = np.zeros(len(x), dtype=np.int64)
    for f in (0, 1):
        sel = halves == f
        out[sel] = (x[sel] > np.median(x[sel])).astype(np.int64)
    return out


@pytest.mark.parametrize("delta, significant", [(3.0, True), (0.0, False)])
def test_heldout_test_finds_a_real_split_and_not_noise(delta, significant):
    """Two states 3 sd apart: the held-out gain is clearly positive. One state: the
    split fitted on one half predicts the other half no better (z small), and each
    particle is scored by models fitted on the other half only."""
    rng = np.random.default_rng(1)
    n = 400
    state = rng.integers(0, 2, n)
    x = rng.normal(delta * state, 1.0)
    halves = np.arange(n) % 2
    seen: list[set[int]] = []
    result = heldout_test(halves, _labels_per_half(x, halves), *_gaussian_models(x, seen))
    assert (result.p < 0.001) is significant, result
    for fold, members in zip((0, 1), seen, strict=True):
        assert members == set(np.nonzero(halves == fold)[0].tolist())


def test_heldout_test_false_positive_rate_under_the_null():
    """Data with no heterogeneity: the test rejects at most about alpha of the time
    (it is conservative: the mean held-out gain of an over-fitted split is negative)."""
    rejections = 0
    for seed in range(60):
        rng = np.random.default_rng(100 + seed)
        x = rng.normal(0.0, 1.0, 200)
        halves = rng.permutation(np.arange(200) % 2)
        res = heldout_test(halves, _labels_per_half(x, halves), *_gaussian_models(x, []))
        rejections += res.p < 0.05
    assert rejections <= 6


def test_sub_halves_are_balanced_and_follow_names_not_rows():
    names = [f"p{i}" for i in range(31)]
    tomos = ["t1"] * 31
    members = np.arange(3, 28)
    sub = sub_halves(names, tomos, members, seed=2)
    assert abs(int(sub.sum()) - (len(members) - int(sub.sum()))) <= 1
    perm = np.random.default_rng(0).permutation(31)
    inv = np.argsort(perm)
    shuffled = sub_halves([names[i] for i in perm], [tomos[i] for i in perm],
                          inv[members], seed=2)
    np.testing.assert_array_equal(shuffled, sub)


def _em_test_on_two_components(out: Path | None = None) -> np.ndarray:
    """The held-out test of region 0 of a small two-component set by focused EM
    (:func:`em_region_test`), as ml2d runs it. -> (gains (N,), z) stacked; saved to
    ``out / "gain.npy"`` by the main rank when ``out`` is given."""
    import torch
    from synthetic import blob_volume, complex_points, make_tilt_set

    from tomohet import parallel
    from tomohet.data.keys import half_sets
    from tomohet.methods.discovery import discover_with
    from tomohet.methods.em import EMEngine
    from tomohet.methods.ml import ML2D
    from tomohet.methods.region_test import em_region_test

    base = complex_points()
    vols = torch.stack([blob_volume(24, base + extra) for extra in
                        ([], [(8.0, 1.0, -1.0)], [(-8.0, -1.0, 1.0)],
                         [(8.0, 1.0, -1.0), (-8.0, -1.0, 1.0)])])
    particles, _, _ = make_tilt_set(n=96, box=24, n_tilts=9, snr=0.5, seed=3,
                                    volumes=vols, labels=np.arange(96) % 4)
    clf = ML2D(n_classes=4, n_iter=4, random_state=0, progress=False, batch_size=16)
    cpu = torch.device("cpu")
    ref_mask, _ = clf._masks(particles, cpu)
    keep = np.arange(96)
    halves = half_sets(particles.names, particles.tomo_names, 0, particles.table)
    plain = EMEngine(particles, clf._config(cpu), keep, ref_mask)
    setup = discover_with(plain, 4, "auto", "components", halves, 0)
    assert setup.discovery is not None and setup.discovery.regions
    found = setup.discovery
    result = em_region_test(clf, setup, particles, found.regions[0], found.region_labels[0],
                            halves, 0)
    gain = np.append(result.gain, result.z)
    if out is not None and parallel.is_main():
        np.save(out / "gain.npy", gain)
    return gain


def test_em_region_test_on_two_ranks_equals_one_rank(tmp_path):
    """The test's focused fits and evaluation passes are sharded EM passes: 2 gloo ranks
    give each particle the same held-out gain (and z) as 1 rank, and a real component
    (region 0 of a two-component set) is accepted."""
    from ranks import as_rank

    from tomohet import parallel

    one = _em_test_on_two_components()
    assert one[-1] > 3.0  # a real component: z well past the 1% point
    parallel.spawn(as_rank, 2, (_em_test_on_two_components, tmp_path), timeout_s=300)
    two = np.load(tmp_path / "gain.npy")
    np.testing.assert_allclose(two, one, rtol=1e-3, atol=1e-3)


def test_a_split_that_shrank_to_one_map_is_not_accepted_however_consistent():
    """Gains of ~0 nats on every particle (the two-class maps shrunk to one) can have a
    large z from rounding alone; without a summed gain of log(100) nats the test does not
    accept. A real component (0.2 nats a particle) is accepted at the same z."""
    from tomohet.methods.region_test import MIN_TOTAL_GAIN_NATS, RegionTest

    rng = np.random.default_rng(4)
    tiny = 1e-5 + 1e-5 * rng.standard_normal(300)
    z, p = gain_z(tiny)
    assert p < 1e-6  # the z-test alone would accept
    assert not RegionTest(tiny, z, p).accepts(0.01)
    real = 0.2 + 0.2 * rng.standard_normal(300)
    zr, pr = gain_z(real)
    assert RegionTest(real, zr, pr).accepts(0.01)
    assert float(real.sum()) > MIN_TOTAL_GAIN_NATS > float(tiny.sum())
    summary = RegionTest(real, zr, pr).summary()
    assert summary["total_gain_nats"] == pytest.approx(real.sum(), abs=0.01)
