"""Benchmark metrics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomohet import metrics as m

torch.set_num_threads(1)


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4, 400)


def test_perfect_and_permuted_labels(labels):
    assert m.ari(labels, labels) == pytest.approx(1.0)
    perm = np.array([2, 0, 3, 1])[labels]
    assert m.ari(labels, perm) == pytest.approx(1.0)
    assert m.nmi(labels, perm) == pytest.approx(1.0)
    assert m.hungarian_accuracy(labels, perm) == pytest.approx(1.0)
    pe = m.population_error(labels, perm)
    assert pe.mean == pytest.approx(0.0) and pe.max == pytest.approx(0.0)
    cm = m.confusion_matrix(labels, perm, match=True)
    assert np.array_equal(cm, np.diag(np.bincount(labels)))


def test_string_labels_and_tensors(labels):
    names = np.array(["a", "b", "c", "d"])[labels]
    assert m.ari(names, torch.as_tensor(labels)) == pytest.approx(1.0)


def test_random_labels_near_zero(labels):
    rng = np.random.default_rng(1)
    rand = rng.integers(0, 4, len(labels))
    assert abs(m.ari(labels, rand)) < 0.03
    assert m.nmi(labels, rand) < 0.05
    assert m.hungarian_accuracy(labels, rand) < 0.4


def test_hungarian_with_different_k():
    true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    split = np.array([5, 5, 7, 7, 9, 9, 9, 9])  # true class 0 split in two
    assert m.hungarian_accuracy(true, split) == pytest.approx(6 / 8)
    assert m.confusion_matrix(true, split).shape == (2, 3)
    pe = m.population_error(true, split)
    # fractions true (.5, .5, 0) vs matched pred (.25, .5, .25)
    assert pe.max == pytest.approx(0.25) and pe.mean == pytest.approx(1 / 6)
    merged = np.zeros(8, dtype=int)  # K_pred < K_true
    assert m.hungarian_accuracy(true, merged) == pytest.approx(0.5)
    assert m.population_error(true, merged).max == pytest.approx(0.5)
    assert m.hungarian_mapping(true, split) in ({0: 0, 2: 1}, {1: 0, 2: 1})


def test_label_checks():
    with pytest.raises(ValueError, match="different lengths"):
        m.ari([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="1D"):
        m.nmi(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="empty"):
        m.hungarian_accuracy([], [])
    with pytest.raises(ValueError, match="NaN"):
        m.population_error([0.0, np.nan], [0, 1])


def test_fsc_identical_and_independent():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(6, 24, 24, 24, generator=g)
    same = m.per_particle_fsc(v, v.clone(), pixel_size_A=3.0)
    assert same.auc.shape == (6,) and same.curves.shape == (6, 13)
    assert np.allclose(same.auc, 1.0, atol=1e-4)
    assert np.allclose(same.resolution_A, 6.0)  # Nyquist
    other = m.per_particle_fsc(v, torch.randn(6, 24, 24, 24, generator=g), 3.0, chunk=4)
    assert np.all(np.abs(other.auc) < 0.1) and abs(other.mean_auc) < 0.05
    scaled = m.per_particle_fsc(v, 3.0 * v + 1.0, 3.0, mask=torch.ones(24, 24, 24))
    assert scaled.mean_auc == pytest.approx(1.0, abs=1e-4)


def test_half_map_resolution_and_checks():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(20, 20, 20, generator=g)
    assert m.half_map_resolution(v, v, 2.0) == pytest.approx(4.0)
    res = m.half_map_resolution(v, torch.randn(20, 20, 20, generator=g), 2.0)
    assert res > 20  # no correlation: drops below 0.143 at the first shell
    with pytest.raises(ValueError, match="differ in shape"):
        m.per_particle_fsc(torch.zeros(2, 8, 8, 8), torch.zeros(3, 8, 8, 8), 1.0)
    with pytest.raises(ValueError, match="cube"):
        m.per_particle_fsc(torch.zeros(2, 8, 8, 6), torch.zeros(2, 8, 8, 6), 1.0)
    with pytest.raises(ValueError, match="pixel_size_A"):
        m.per_particle_fsc(torch.zeros(8, 8, 8), torch.zeros(8, 8, 8), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        m.half_map_resolution(torch.full((8, 8, 8), float("nan")), torch.zeros(8, 8, 8), 1.0)


def test_neighbourhood_similarity():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(400, 2))
    assert m.neighbourhood_similarity(truth, truth, k=10) == pytest.approx(1.0)
    # any distance-preserving map of the truth keeps neighbourhoods
    rot = np.array([[0.6, -0.8], [0.8, 0.6]])
    assert m.neighbourhood_similarity(5 * truth @ rot + 3, truth, k=10) == pytest.approx(1.0)
    rand = m.neighbourhood_similarity(rng.normal(size=(400, 3)), truth, k=10)
    assert rand < 0.1
    noisy = m.neighbourhood_similarity(truth + 0.05 * rng.normal(size=truth.shape), truth, 10)
    assert rand < noisy < 1.0
    # discrete truth: k-NN label purity
    states = rng.integers(0, 3, 300)
    emb = m.truth_embedding(states=states)
    sep = np.eye(3)[states] * 5 + rng.normal(scale=0.1, size=(300, 3))
    assert m.neighbourhood_similarity(sep, emb, k=15) == pytest.approx(1.0)
    mixed = m.truth_embedding(states=states, coords=rng.uniform(size=300))
    assert mixed.shape == (300, 4)
    with pytest.raises(ValueError, match="k must"):
        m.neighbourhood_similarity(truth, truth, k=400)
    with pytest.raises(ValueError, match="differ in N"):
        m.neighbourhood_similarity(truth[:10], truth, k=3)


def test_rank_correlation():
    rng = np.random.default_rng(3)
    c = rng.uniform(size=300)
    assert m.rank_correlation(c**3, c) == pytest.approx(1.0)
    assert m.rank_correlation(-2 * c, c) == pytest.approx(1.0)  # sign-invariant
    two = np.c_[rng.normal(size=300), np.exp(c)]  # best axis is the second
    assert m.rank_correlation(two, c) == pytest.approx(1.0)
    assert m.rank_correlation(rng.normal(size=(300, 4)), c) < 0.3
    assert m.rank_correlation(np.zeros(300), c) == 0.0
    with pytest.raises(ValueError, match="constant"):
        m.rank_correlation(c, np.ones(300))
    with pytest.raises(ValueError, match="NaN"):
        m.rank_correlation(np.full(300, np.nan), c)
