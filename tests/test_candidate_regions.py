"""Discovery's separate regions (:func:`tomohet.methods.regions.candidate_regions`) on
z-maps of known peaks: the first significant, further ones by p-value, candidates for the
held-out test, the particle-confined test, and clusters inside an earlier region."""

from __future__ import annotations

import numpy as np
import torch

from tomohet.methods.detection import Detection
from tomohet.methods.regions import candidate_regions


def _detection(peaks: list[tuple[tuple[int, int, int], float]], threshold: float = 5.0
               ) -> Detection:
    """A z-map of isolated single-voxel peaks and a null whose quantiles are known:
    null maxima 0.0, 0.1, ..., 9.9 (p of a peak t = (1 + #{null >= t}) / 101)."""
    z = torch.zeros((1, 16, 16, 16))
    for (i, j, k), v in peaks:
        z[0, i, j, k] = v
    null = np.arange(100) / 10.0
    stat = float(z.max())
    return Detection(z[0], z, z[0], stat, null, threshold,
                     float((1 + (null >= stat).sum()) / 101), (0.0,), 0.0)


def test_candidate_regions_first_significant_then_by_p_value():
    # peaks 8 (> threshold 5), 9.6 (p = 5/101 <= 0.05), 9.8 would be first; order by peak
    det = _detection([((3, 3, 3), 9.8), ((12, 12, 12), 9.55), ((3, 12, 8), 4.0)],
                     threshold=9.5)
    regions = candidate_regions(det, 0.0, max_regions=3, dilate=1)
    # 9.8 > threshold; 9.55: p = (1 + 4) / 101 = 0.0495 <= 0.05; 4.0: p = 61 / 101
    assert len(regions) == 2
    assert regions[0][3, 3, 3] == 1.0 and regions[0][12, 12, 12] == 0.0
    assert regions[1][12, 12, 12] == 1.0 and regions[1][3, 3, 3] == 0.0
    assert float((regions[0] * regions[1]).sum()) < 1e-3  # disjoint (up to the soft edge)
    assert len(candidate_regions(det, 0.0, max_regions=1)) == 1
    # nothing above the threshold: no region at all, however small the other p-values
    assert candidate_regions(_detection([((3, 3, 3), 9.0)], threshold=9.5), 0.0, 2) == []


def test_candidate_regions_skip_a_cluster_inside_an_earlier_regions_dilation():
    """A cluster that lies, dilated, wholly inside an earlier region's dilation is no new
    region (it used to come back as an empty mask, which crashed ml2d's two-class start
    on the ladder cell 30% / 18%, SNR 0.1, 1,000 particles); the next one is."""
    shell = [((i, j, k), 9.8) for i in range(6, 11) for j in range(6, 11)
             for k in range(6, 11) if max(abs(i - 8), abs(j - 8), abs(k - 8)) == 2]
    det = _detection(shell + [((8, 8, 8), 9.7), ((13, 13, 13), 9.6)],
                     threshold=9.5)  # p of 9.7: 3 / 101, of 9.6: 5 / 101
    regions = candidate_regions(det, 0.0, max_regions=3, dilate=2)
    assert len(regions) == 2
    assert all(float(r.max()) > 0.5 for r in regions)  # no empty mask
    assert regions[0][8, 8, 8] == 1.0 and regions[1][13, 13, 13] == 1.0


def test_candidate_regions_without_the_threshold_for_the_held_out_test():
    """``require_first=False``: when nothing passes the variance test, its highest
    clusters are still candidates (for the held-out test), by decreasing peak."""
    det = _detection([((3, 3, 3), 8.0), ((12, 12, 12), 9.0), ((3, 12, 8), 2.0)],
                     threshold=9.5)  # nothing above 9.5; clusters above 0.6 x 9.5 = 5.7
    assert candidate_regions(det, 0.0, 3) == []
    regions = candidate_regions(det, 0.0, 3, alpha_more=1.0, dilate=1, require_first=False)
    assert len(regions) == 2  # 2.0 is below the cluster level: no cluster
    assert regions[0][12, 12, 12] == 1.0 and regions[1][3, 3, 3] == 1.0
    assert len(candidate_regions(det, 0.0, 1, alpha_more=1.0, require_first=False)) == 1


def test_candidate_regions_confirm_takes_further_regions_inside_the_particle():
    """Further regions judged on the particle-confined test: its peaks order them and its
    null gives their p; the first region and the clusters still come from ``det``."""
    det = _detection([((3, 3, 3), 9.8), ((12, 12, 12), 6.0), ((3, 12, 8), 7.0)],
                     threshold=9.5)  # clusters: z > 0.6 x 9.5; p of 7.0 = 31 / 101
    assert len(candidate_regions(det, 0.0, max_regions=3, dilate=1)) == 1
    # confined: (12, 12, 12) now peaks at 9.7 (p 3/101), (3, 12, 8) lies outside (0)
    conf = _detection([((3, 3, 3), 9.9), ((12, 12, 12), 9.7)], threshold=9.5)
    regions = candidate_regions(det, 0.0, max_regions=3, dilate=1, confirm=conf)
    assert len(regions) == 2
    assert regions[0][3, 3, 3] == 1.0 and regions[1][12, 12, 12] == 1.0
    assert all(float(r[3, 12, 8]) == 0.0 for r in regions)
    # the confined test's null decides: with a higher null, nothing more is taken
    conf.null = conf.null + 1.0
    assert len(candidate_regions(det, 0.0, max_regions=3, dilate=1, confirm=conf)) == 1


def test_candidate_regions_with_starts_skip_pieces_and_keep_a_neighbouring_component():
    """With ``start``: a further cluster whose two-class start agrees with an accepted
    region's is a piece of its component, not a region; a component whose core lies in
    the first region's dilation still becomes a region, and takes its dilation back.
    (Ladder 30% / 18%, SNR 0.1, 1,000 particles: component B's cluster lay in A's
    dilation and a piece of A came second.)"""
    cube = [((i, j, k), 9.8) for i in range(4, 7) for j in range(4, 7) for k in range(4, 7)]
    # A: a cube about (5, 5, 5); B at (5, 5, 8), two voxels off A's face (in its
    # dilation); C far away, a piece of A (its start agrees with A's); p of 9.75 and 9.7
    # is 3 / 101: C comes before B by peak
    det = _detection(cube + [((5, 5, 8), 9.7), ((12, 12, 12), 9.75)], threshold=9.5)
    rng = np.random.default_rng(0)
    has_a, has_b = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    seen: list[tuple[float, float, float]] = []

    def start(mask: torch.Tensor) -> np.ndarray:
        seen.append((float(mask[5, 5, 5]), float(mask[5, 5, 8]), float(mask[12, 12, 12])))
        return has_b if mask[5, 5, 8] > 0.5 and mask[5, 5, 5] < 0.5 else has_a

    old = candidate_regions(det, 0.0, max_regions=2, dilate=2)  # B skipped, C second
    assert old[1][12, 12, 12] == 1.0 and all(float(r[5, 5, 8]) < 1.0 for r in old[1:])
    regions = candidate_regions(det, 0.0, max_regions=2, dilate=2, start=start)
    assert len(regions) == 2 and len(seen) == 3  # A, C (skipped), B
    assert regions[0][5, 5, 5] == 1.0 and regions[1][5, 5, 8] == 1.0
    assert float(regions[0][5, 5, 8]) < 0.5  # B's dilation is no longer A's
    assert float(regions[1][5, 5, 6]) == 0.0 or float(regions[0][5, 5, 6]) == 1.0
    assert all(float(r[12, 12, 12]) == 0.0 for r in regions)
    # starts that all differ: the rule takes clusters by rank as without it (C second)
    other = iter([has_a, has_b])
    again = candidate_regions(det, 0.0, max_regions=2, dilate=2, start=lambda m: next(other))
    assert again[1][12, 12, 12] == 1.0
