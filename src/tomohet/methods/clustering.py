"""Discrete classes from continuous coordinates: k-means, Gaussian mixture (BIC), Ward.

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

__all__ = ["ClusterResult", "cluster_latent", "suggest_k", "METHODS"]

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


def _standardise(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    sd = z.std(0)
    return (z - z.mean(0)) / np.where(sd > 0, sd, 1.0)


def suggest_k(z: np.ndarray, max_clusters: int = 8, seed: int = 0,
              covariance_type: str = "full") -> tuple[int, dict[int, float]]:
    """K of lowest BIC among seeded Gaussian mixtures with 1..max_clusters components."""
    x = _standardise(z)
    bic: dict[int, float] = {}
    for k in range(1, max(1, min(max_clusters, len(x) - 1)) + 1):
        gm = GaussianMixture(k, covariance_type=covariance_type, n_init=2, random_state=seed,
                             reg_covar=1e-2).fit(x)
        bic[k] = float(gm.bic(x))
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
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
    elif method == "gmm":
        gm = GaussianMixture(k, covariance_type="full", n_init=2, random_state=seed,
                             reg_covar=1e-2).fit(x)
        proba = gm.predict_proba(x)
        labels = proba.argmax(1)
        if not bic:
            bic = {k: float(gm.bic(x))}
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
