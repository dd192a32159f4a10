"""Latent-space analysis shared by continuous methods: embeddings, clusters, trajectories.

Everything takes a (N, Z) latent array; rows with NaN (particles a method skipped) are
left out of fits and get NaN coordinates / label -1 back. Random steps take a seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tomohet.methods import clustering

__all__ = ["PCAResult", "finite_rows", "pca", "umap_embedding", "kmeans_clusters",
           "gmm_clusters", "Clusters", "pc_trajectory", "latent_path", "nearest_on_data"]


def finite_rows(z: np.ndarray) -> np.ndarray:
    """(N,) bool: rows without NaN/inf."""
    return np.isfinite(np.asarray(z, dtype=float)).all(axis=1)


@dataclass
class PCAResult:
    """coords (N, P) (NaN rows kept as NaN); components (P, Z); mean (Z,); explained (P,)
    fraction of variance per component."""

    coords: np.ndarray
    components: np.ndarray
    mean: np.ndarray
    explained: np.ndarray

    def to_latent(self, coords: np.ndarray) -> np.ndarray:
        """Back from PC coordinates (n, P) to the latent (n, Z)."""
        return self.mean + np.asarray(coords) @ self.components


def pca(z: np.ndarray, n_components: int = 2) -> PCAResult:
    """Principal components of the finite rows of ``z`` (SVD; deterministic signs: the
    largest loading of each component is positive)."""
    z = np.asarray(z, dtype=float)
    ok = finite_rows(z)
    x = z[ok]
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    p = min(n_components, vt.shape[0])
    comps = vt[:p]
    sign = np.sign(comps[np.arange(p), np.abs(comps).argmax(1)])
    comps = comps * sign[:, None]
    var = s**2
    explained = var[:p] / var.sum() if var.sum() > 0 else np.zeros(p)
    coords = np.full((len(z), p), np.nan)
    coords[ok] = (x - mean) @ comps.T
    return PCAResult(coords, comps, mean, explained)


def umap_embedding(z: np.ndarray, seed: int = 0, n_neighbors: int = 15
                   ) -> tuple[np.ndarray, str]:
    """2D UMAP of the finite rows when ``umap-learn`` is installed, else the first two
    principal components -> (coords (N, 2) with NaN rows, "umap" or "pca")."""
    z = np.asarray(z, dtype=float)
    ok = finite_rows(z)
    out = np.full((len(z), 2), np.nan)
    if z.shape[1] <= 2:
        out[ok] = np.pad(z[ok], ((0, 0), (0, 2 - z.shape[1])))
        return out, "latent"
    try:
        import umap  # optional
    except ImportError:
        return pca(z, 2).coords, "pca"
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, max(2, int(ok.sum()) - 1)),
                        random_state=seed, n_jobs=1)
    out[ok] = reducer.fit_transform(z[ok])
    return out, "umap"


@dataclass
class Clusters:
    """labels (N,) (-1 for NaN rows); centres (K, Z) in the latent; on_data (K,) index of
    the particle nearest each centre; method "kmeans" or "gmm"."""

    labels: np.ndarray
    centres: np.ndarray
    on_data: np.ndarray
    method: str


def nearest_on_data(z: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Index of the finite row of ``z`` nearest each of ``points`` (n, Z) -> (n,)."""
    z = np.asarray(z, dtype=float)
    ok = np.nonzero(finite_rows(z))[0]
    d = ((z[ok][None] - np.asarray(points)[:, None]) ** 2).sum(-1)
    return ok[d.argmin(1)]


def kmeans_clusters(z: np.ndarray, k: int, seed: int = 0) -> Clusters:
    """k-means (10 seeded restarts) of the finite rows
    (:func:`tomohet.methods.clustering.kmeans`)."""
    fit = clustering.kmeans(z, k, seed, n_init=10)
    return Clusters(fit.labels, fit.centres, nearest_on_data(z, fit.centres), "kmeans")


def gmm_clusters(z: np.ndarray, k: int, seed: int = 0) -> Clusters:
    """Gaussian mixture (full covariances, seeded, light regularisation) of the finite
    rows (:func:`tomohet.methods.clustering.gmm`)."""
    fit = clustering.gmm(z, k, seed, n_init=2, reg_covar=1e-5)
    return Clusters(fit.labels, fit.centres, nearest_on_data(z, fit.centres), "gmm")


def pc_trajectory(result: PCAResult, pc: int, n_points: int = 10,
                  low: float = 5.0, high: float = 95.0) -> np.ndarray:
    """Latent points (n_points, Z) along principal component ``pc`` (0-based), from its
    ``low`` to its ``high`` percentile, other components at 0 (the mean)."""
    c = result.coords[:, pc]
    c = c[np.isfinite(c)]
    lo, hi = np.percentile(c, [low, high])
    coords = np.zeros((n_points, result.components.shape[0]))
    coords[:, pc] = np.linspace(lo, hi, n_points)
    return result.to_latent(coords)


def latent_path(z: np.ndarray, start: int, end: int, n_points: int = 10) -> np.ndarray:
    """Straight line in the latent from particle ``start`` to particle ``end``
    -> (n_points, Z)."""
    z = np.asarray(z, dtype=float)
    a, b = z[start], z[end]
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("path end points must be particles with a latent (not skipped)")
    t = np.linspace(0.0, 1.0, n_points)[:, None]
    return (1 - t) * a + t * b
