"""tomohet ensemble: regions of co-varying occupancy in a volume ensemble."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from tomohet.analysis.ensemble import co_occurrence, ensemble_regions, load_map_folder
from tomohet.data.sources import DataError
from tomohet.io.mrc import write_mrc

D = 16


def _blob(centre, radius):
    z, y, x = np.mgrid[:D, :D, :D]
    r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
    return (r2 <= radius**2).astype(np.float32)


def _ensemble(n=60, noise=0.15, seed=0):
    """A core plus two components A and B present independently (states A+B, A, B, none)."""
    rng = np.random.default_rng(seed)
    core, a, b = _blob((8, 8, 8), 4), _blob((13, 8, 8), 2), _blob((3, 8, 8), 2)
    a, b = a * (1 - core), b * (1 - core)
    has_a, has_b = rng.random(n) < 0.5, rng.random(n) < 0.5
    vols = core[None] + has_a[:, None, None, None] * a + has_b[:, None, None, None] * b
    vols = vols + noise * rng.normal(size=vols.shape)
    return vols.astype(np.float32), has_a, has_b, a, b


def test_recovers_two_components_as_separate_regions():
    vols, has_a, has_b, a, b = _ensemble()
    res = ensemble_regions(vols, threshold=0.5)
    assert res.n_regions == 2
    lab = res.labels
    regions = {j: lab == j for j in (1, 2)}
    # each region lies inside one component, and covers most of it
    match = {j: "A" if (regions[j] & (a > 0)).sum() > (regions[j] & (b > 0)).sum() else "B"
             for j in (1, 2)}
    assert set(match.values()) == {"A", "B"}
    for j, comp in match.items():
        truth = a if comp == "A" else b
        assert (regions[j] & (truth > 0)).sum() >= 0.8 * regions[j].sum()
        assert (regions[j] & (truth > 0)).sum() >= 0.5 * (truth > 0).sum()
    pres = res.present()
    state = 2 * has_a + has_b
    j_a = [j for j, c in match.items() if c == "A"][0] - 1
    pred = 2 * pres[:, j_a] + pres[:, 1 - j_a]
    assert adjusted_rand_score(state, pred) > 0.9
    co = co_occurrence(res)
    assert co.shape == (2, 2)
    np.testing.assert_allclose(np.diag(co), pres.mean(0))


def test_volume_order_does_not_matter():
    vols = _ensemble(seed=1)[0]
    perm = np.random.default_rng(3).permutation(len(vols))
    r1, r2 = ensemble_regions(vols, threshold=0.5), ensemble_regions(vols[perm], threshold=0.5)
    np.testing.assert_array_equal(r1.labels, r2.labels)
    np.testing.assert_allclose(r2.occupancy, r1.occupancy[perm])


def test_maps_of_different_sizes_are_refused(tmp_path):
    write_mrc(tmp_path / "a.mrc", np.zeros((D, D, D), np.float32), 2.0)
    write_mrc(tmp_path / "b.mrc", np.zeros((D + 2, D + 2, D + 2), np.float32), 2.0)
    with pytest.raises(DataError, match=r"different sizes.*a\.mrc.*b\.mrc"):
        load_map_folder(tmp_path)


def test_cli_writes_regions_and_features(tmp_path):
    from tomohet.cli.main import main

    vols, has_a, has_b, _, _ = _ensemble(n=24, seed=2)
    folder = tmp_path / "maps"
    for i, v in enumerate(vols):
        write_mrc(folder / f"vol_{i:03d}.mrc", v, 2.0)
    assert main(["ensemble", str(folder), "--threshold", "0.5",
                 "--out", str(tmp_path / "out")]) == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "region_occupancy.csv")
    assert list(table["volume"]) == [f"vol_{i:03d}.mrc" for i in range(24)]
    assert {"region_1", "region_2"} <= set(table.columns)
    assert (tmp_path / "out" / "regions.mrc").exists()
    assert (tmp_path / "out" / "co_occurrence.png").exists()
