"""Cutting one connected cluster of a z-map between prominent peaks (methods/peaks.py)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tomohet.methods.peaks import split_clusters


def _blob(d, centre, peak, sd):
    g = np.indices((d, d, d)).astype(float)
    r2 = sum((g[i] - centre[i]) ** 2 for i in range(3))
    return peak * np.exp(-0.5 * r2 / sd**2)


def _clusters(z, level):
    lab, n = ndimage.label(z > level)
    return lab, n


def test_two_neighbouring_components_joined_below_the_threshold_are_cut_apart():
    """Peaks 12 and 8.5, 5 voxels apart, joined at ~3.5 (as A and B of a held-out-like
    cell): one cluster at 0.6 x the threshold 4.9, two after the cut, each holding its
    own peak and all the cluster's voxels shared out."""
    z = np.maximum(_blob(20, (10, 8, 8), 12.0, 1.6), _blob(20, (10, 8, 13), 8.5, 1.6))
    lab, n = _clusters(z, 0.6 * 4.9)
    assert n == 1
    out, m = split_clusters(z, lab, n, 4.9)
    assert m == 2
    assert out[10, 8, 8] != out[10, 8, 13] and out[10, 8, 8] > 0 and out[10, 8, 13] > 0
    assert set(np.unique(out[lab > 0])) == {1, 2} and np.all(out[lab == 0] == 0)


def test_a_bump_on_one_components_flank_is_not_a_second_region():
    """A second maximum that rises less than the prominence above its saddle, a peak
    below the level, and separate clusters: left as they were."""
    z = _blob(20, (10, 8, 8), 12.0, 2.0) + _blob(20, (10, 8, 11), 1.2, 0.8)
    lab, n = _clusters(z, 3.0)
    out, m = split_clusters(z, lab, n, 4.9)
    assert (m, n) == (1, 1) and np.array_equal(out, lab)
    weak = np.maximum(_blob(20, (10, 8, 8), 12.0, 1.6), _blob(20, (10, 8, 13), 4.5, 1.6))
    lab, n = _clusters(weak, 3.0)
    assert split_clusters(weak, lab, n, 4.9)[1] == n
    apart = np.maximum(_blob(20, (5, 5, 5), 9.0, 1.0), _blob(20, (14, 14, 14), 8.0, 1.0))
    lab, n = _clusters(apart, 3.0)
    out, m = split_clusters(apart, lab, n, 4.9)
    assert (n, m) == (2, 2) and np.array_equal(out, lab)
