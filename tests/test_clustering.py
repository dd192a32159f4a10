"""One home for clustering (methods/clustering.py): every caller gives the labels that a
direct scikit-learn fit with that caller's settings and seed gives."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from tomohet.analysis import latent as L
from tomohet.bench.scoring import score_outputs
from tomohet.methods import clustering


def _blobs(seed: int = 0, n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % 3
    centres = np.array([[0.0, 0.0, 0.0], [2.0, 0.5, 0.0], [0.5, 2.5, 1.0]])
    return centres[truth] + rng.normal(scale=0.7, size=(n, 3)), truth


@pytest.mark.parametrize("seed", [0, 7])
def test_kmeans_and_gmm_match_sklearn_with_nan_rows(seed):
    z, _ = _blobs(seed)
    z[[4, 50]] = np.nan
    ok = np.isfinite(z).all(1)
    km = KMeans(n_clusters=3, n_init=10, random_state=seed).fit(z[ok])
    fit = clustering.kmeans(z, 3, seed, n_init=10)
    assert np.array_equal(fit.labels[ok], km.labels_) and (fit.labels[~ok] == -1).all()
    np.testing.assert_array_equal(fit.centres, km.cluster_centers_)
    gm = GaussianMixture(3, covariance_type="full", n_init=2, random_state=seed,
                         reg_covar=1e-5).fit(z[ok])
    g = clustering.gmm(z, 3, seed, n_init=2, reg_covar=1e-5)
    assert np.array_equal(g.labels[ok], gm.predict(z[ok])) and (g.labels[~ok] == -1).all()
    np.testing.assert_allclose(g.probabilities[ok], gm.predict_proba(z[ok]))
    assert np.isnan(g.probabilities[~ok]).all()
    assert g.bic == pytest.approx(gm.bic(z[ok]))
    # the analysis wrappers are these fits (10 k-means restarts; GMM reg 1e-5)
    a_km, a_gm = L.kmeans_clusters(z, 3, seed), L.gmm_clusters(z, 3, seed)
    assert np.array_equal(a_km.labels, fit.labels) and np.array_equal(a_gm.labels, g.labels)
    assert np.isfinite(z[a_km.on_data]).all()


def test_cluster_latent_is_sklearn_on_standardised_columns_relabelled_by_size():
    z, _ = _blobs(3)
    x = (z - z.mean(0)) / z.std(0)
    for method in ("kmeans", "gmm"):
        if method == "kmeans":
            raw = KMeans(n_clusters=3, n_init=4, random_state=5).fit_predict(x)
        else:
            raw = GaussianMixture(3, covariance_type="full", n_init=2, random_state=5,
                                  reg_covar=1e-2).fit(x).predict(x)
        res = clustering.cluster_latent(z, method, n_clusters=3, seed=5)
        sizes = np.bincount(res.labels)
        assert (np.diff(sizes) <= 0).all()  # class 0 the largest
        assert adjusted_rand_score(raw, res.labels) == 1.0
        # a relabelling only: one new label per old label
        assert len({(a, b) for a, b in zip(raw, res.labels, strict=True)}) == 3
    k, bic = clustering.suggest_k(z, max_clusters=4, seed=0)
    want = {j: GaussianMixture(j, covariance_type="full", n_init=2, random_state=0,
                               reg_covar=1e-2).fit(x).bic(x) for j in range(1, 5)}
    assert bic == pytest.approx(want, rel=1e-9) and k == min(want, key=want.__getitem__)


def test_bench_scoring_clusters_a_latent_as_direct_kmeans():
    z, truth = _blobs(1)
    scores = score_outputs(truth, None, latent=z, seed=4)
    lab = KMeans(n_clusters=3, n_init=4, random_state=4).fit_predict(z)
    assert scores["ari_source"] == "kmeans"
    assert scores["ari"] == pytest.approx(adjusted_rand_score(truth, lab))


def test_same_seed_same_labels():
    z, _ = _blobs(2)
    for fit in (clustering.kmeans, clustering.gmm):
        a, b = fit(z, 3, seed=11), fit(z, 3, seed=11)
        assert np.array_equal(a.labels, b.labels)


def test_discovery_components_cluster_as_direct_kmeans():
    """discovery.component_labels: k-means (10 restarts, seeded) of the leading K - 1
    principal components, run on the rows in the given order."""
    import torch

    from tomohet.methods.discovery import component_labels

    rng = np.random.default_rng(5)
    maps = torch.as_tensor(rng.normal(size=(40, 4, 4, 4)))
    maps[::2, 1, 1, 1] += 3.0
    order = rng.permutation(40)
    got = component_labels(maps, None, 3, order, seed=2)
    x = maps.reshape(40, -1).double()
    x = x - x.mean(0, keepdim=True)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    feats = (u[:, :2] * s[:2]).numpy()
    want = np.empty(40, dtype=np.int64)
    want[order] = KMeans(n_clusters=3, n_init=10, random_state=2).fit(feats[order]).labels_
    np.testing.assert_array_equal(got, want)
