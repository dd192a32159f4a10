"""Keyed per-particle randomness: depends on names and seed only, never on row order."""

import numpy as np
import pandas as pd

from tomohet.data.keys import half_sets, keyed_order, keyed_uniform, particle_keys


def _names(n):
    return [f"p{i:04d}" for i in range(n)], [f"tomo{i % 3}" for i in range(n)]


def test_keys_follow_names_under_permutation():
    names, tomos = _names(200)
    perm = np.random.default_rng(1).permutation(200)
    u = keyed_uniform(names, tomos, seed=5, stream="x")
    up = keyed_uniform([names[i] for i in perm], [tomos[i] for i in perm], seed=5, stream="x")
    np.testing.assert_array_equal(up, u[perm])
    assert ((u >= 0) & (u < 1)).all()
    # different seed or stream -> different draws
    assert not np.array_equal(u, keyed_uniform(names, tomos, seed=6, stream="x"))
    assert not np.array_equal(u, keyed_uniform(names, tomos, seed=5, stream="y"))
    # roughly uniform
    assert abs(u.mean() - 0.5) < 0.08


def test_order_and_halves_are_row_order_free():
    names, tomos = _names(101)
    perm = np.random.default_rng(2).permutation(101)
    pn, pt = [names[i] for i in perm], [tomos[i] for i in perm]
    order = keyed_order(names, tomos, seed=3)
    order_p = keyed_order(pn, pt, seed=3)
    assert [names[i] for i in order] == [pn[i] for i in order_p]
    h = half_sets(names, tomos, seed=3)
    hp = half_sets(pn, pt, seed=3)
    np.testing.assert_array_equal(hp, h[perm])
    assert abs(int(h.sum()) - 50) <= 1
    # same particle name in two tomograms are two particles
    k = particle_keys(["a", "a"], ["t1", "t2"])
    assert k[0] != k[1]


def test_half_sets_follow_random_subset_column():
    names, tomos = _names(6)
    table = pd.DataFrame({"rlnRandomSubset": [2, 1, 1, 2, 2, 1]})
    np.testing.assert_array_equal(half_sets(names, tomos, table=table), [1, 0, 0, 1, 1, 0])
    bad = pd.DataFrame({"rlnRandomSubset": [1, 1, 1, 1, 1, 1]})
    h = half_sets(names, tomos, table=bad)
    np.testing.assert_array_equal(h, half_sets(names, tomos))
