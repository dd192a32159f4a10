"""Discrete classes from continuous coordinates: k-means, Gaussian mixture (BIC), Ward.

The one home of clustering for every caller (methods, ``tomohet analyze``, the bench's
scoring): :func:`kmeans` and :func:`gmm` fit the finite rows of a latent, seeded, and
give label -1 to rows with NaN/inf (particles a method skipped); each caller keeps its
own restarts and regularisation, passed as arguments.

:func:`suggest_k` fits seeded Gaussian mixtures for K = 1..max and returns the K of
lowest BIC; :func:`cluster_latent` uses it whenever ``n_clusters`` is not given. Ward's
hierarchical clustering needs O(N^2) memory, so beyond ``ward_max`` particles it is run
on a seeded subsample and the rest go to the nearest cluster centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.mixture import GaussianMixture

__all__ = ["ClusterResult", "ClusterFit", "cluster_latent", "suggest_k", "kmeans", "gmm",
           "METHODS"]

METHODS = ("kmeans", "gmm", "ward")


@dataclass
class ClusterResult:
    labels: np.ndarray  # (N,) 0-based
    n_clusters: int
    method: str
    bic: dict[int, float] = field(default_factory=dict)  # K -> BIC when computed
    probabilities: np.ndarray | None = None  # (N, K) for gmm

    def info(self) -> dict[str, Any]:
        return {"method": self.method, "n_clusters": self.n_clusters,
                "bic": {str(k): v for k, v in self.bic.items()},
                "sizes": np.bincount(self.labels, minlength=self.n_clusters).tolist()}


@dataclass
class ClusterFit:
    """labels (N,) 0-based, -1 for rows that are not finite; centres (K, Z) in the
    input's units; probabilities (N, K) (gmm; NaN for rows not finite); bic (gmm)."""

    labels: np.ndarray
    centres: np.ndarray
    probabilities: np.ndarray | None = None
    bic: float | None = None


def _finite(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    return z, np.isfinite(z).all(axis=1)


def _with_missing(n: int, ok: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = np.full(n, -1, dtype=np.int64)
    out[ok] = labels
    return out


def kmeans(z: np.ndarray, k: int, seed: int = 0, n_init: int = 4) -> ClusterFit:
    """k-means (``n_init`` seeded restarts) of the finite rows of (N, Z) ``z``; K is capped
    at the number of finite rows."""
    z, ok = _finite(z)
    k = max(1, min(int(k), int(ok.sum())))
    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(z[ok])
    return ClusterFit(_with_missing(len(z), ok, km.labels_), km.cluster_centers_)


def gmm(z: np.ndarray, k: int, seed: int = 0, n_init: int = 2,
        reg_covar: float = 1e-2) -> ClusterFit:
    """Gaussian mixture (full covariances, seeded) of the finite rows of (N, Z) ``z``:
    labels are the most probable component."""
    z, ok = _finite(z)
    k = max(1, min(int(k), int(ok.sum())))
    gm = GaussianMixture(k, covariance_type="full", n_init=n_init, random_state=seed,
                         reg_covar=reg_covar).fit(z[ok])
    proba = np.full((len(z), k), np.nan)
    proba[ok] = gm.predict_proba(z[ok])
    return ClusterFit(_with_missing(len(z), ok, gm.predict(z[ok])), gm.means_, proba,
                      float(gm.bic(z[ok])))


def _standardise(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    sd = z.std(0)
    return (z - z.mean(0)) / np.where(sd > 0, sd, 1.0)


def suggest_k(z: np.ndarray, max_clusters: int = 8, seed: int = 0
              ) -> tuple[int, dict[int, float]]:
    """K of lowest BIC among seeded Gaussian mixtures (:func:`gmm`) with 1..max_clusters
    components, on the standardised columns of ``z``."""
    x = _standardise(z)
    bic: dict[int, float] = {}
    for k in range(1, max(1, min(max_clusters, len(x) - 1)) + 1):
        fit = gmm(x, k, seed)
        assert fit.bic is not None
        bic[k] = fit.bic
    return min(bic, key=bic.__getitem__), bic


def _ward(x: np.ndarray, k: int, seed: int, ward_max: int) -> np.ndarray:
    if len(x) <= ward_max:
        return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(len(x), ward_max, replace=False))
    lab = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x[sub])
    centres = np.stack([x[sub][lab == c].mean(0) for c in range(k)])
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    return d2.argmin(1)


def cluster_latent(z: np.ndarray, method: str = "gmm", n_clusters: int | None = None,
                   max_clusters: int = 8, seed: int = 0, ward_max: int = 5000
                   ) -> ClusterResult:
    """Cluster (N, Z) coordinates (standardised per column) into discrete classes.

    ``n_clusters=None``: K suggested by the Gaussian-mixture BIC (any method).
    """
    if method not in METHODS:
        raise ValueError(f"unknown clustering {method!r}; choose from {', '.join(METHODS)}")
    x = _standardise(z)
    bic: dict[int, float] = {}
    k = n_clusters
    if k is None:
        k, bic = suggest_k(x, max_clusters, seed)
    k = int(max(1, min(k, len(x))))
    proba = None
    if method == "kmeans":
        labels = kmeans(x, k, seed).labels
    elif method == "gmm":
        fit = gmm(x, k, seed)
        assert fit.probabilities is not None and fit.bic is not None
        proba = fit.probabilities
        labels = proba.argmax(1)
        if not bic:
            bic = {k: fit.bic}
    else:
        labels = _ward(x, k, seed, ward_max)
    # relabel by decreasing size so class 1 is the largest
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    labels = remap[labels]
    if proba is not None:
        proba = proba[:, order]
    return ClusterResult(labels.astype(np.int64), k, method, bic, proba)
