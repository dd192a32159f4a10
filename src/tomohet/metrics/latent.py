"""Scores of continuous latent embeddings against the true conformational coordinates."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

__all__ = ["neighbourhood_similarity", "rank_correlation", "truth_embedding", "as_2d"]


def as_2d(x: object, name: str) -> np.ndarray:
    """(N,) or (N, Z) array-like -> finite float (N, Z); else ValueError."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (N,) or (N, Z), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def truth_embedding(states: object | None = None, coords: object | None = None,
                    state_weight: float = 10.0) -> np.ndarray:
    """Truth space for :func:`neighbourhood_similarity`.

    states (N,) discrete labels -> one-hot scaled by ``state_weight``; coords (N,) or (N, C)
    continuous coordinates -> standardised per column. Both given: concatenated, so
    particles of different states are never neighbours before those of the same state.
    -> (N, K + C).
    """
    parts = []
    if states is not None:
        s = np.unique(np.asarray(states).reshape(-1), return_inverse=True)[1].reshape(-1)
        parts.append(np.eye(int(s.max()) + 1)[s] * state_weight)
    if coords is not None:
        c = as_2d(coords, "coords")
        sd = c.std(0)
        parts.append((c - c.mean(0)) / np.where(sd > 0, sd, 1.0))
    if not parts:
        raise ValueError("truth_embedding needs states and/or coords")
    if len(parts) == 2 and len(parts[0]) != len(parts[1]):
        raise ValueError(f"states ({len(parts[0])}) and coords ({len(parts[1])}) differ in N")
    return np.concatenate(parts, axis=1)


def _knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every point, excluding itself. -> (N, k) indices, distances."""
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    dist, idx = nn.kneighbors(x)
    n = len(x)
    self_pos = idx == np.arange(n)[:, None]
    # drop the point itself (or, with duplicates where it was not returned, the farthest)
    drop = np.where(self_pos.any(1), self_pos.argmax(1), k)
    keep = np.ones_like(self_pos)
    keep[np.arange(n), drop] = False
    return idx[keep].reshape(n, k), dist[keep].reshape(n, k)


def neighbourhood_similarity(latent: object, truth: object, k: int = 20) -> float:
    """Mean fraction of each particle's k latent neighbours that are truth neighbours.

    latent (N, Z) or (N,); truth (N, C) or (N,) coordinates (see :func:`truth_embedding`
    for discrete states). A latent neighbour counts when it lies within the particle's
    k-th nearest truth distance (ties included), so for purely discrete truth this is the
    k-NN label purity; for continuous truth it is cryoBench's shared-neighbour fraction
    (1 = same neighbourhoods, ~k/N for a random latent). -> float in [0, 1].
    """
    z = as_2d(latent, "latent")
    t = as_2d(truth, "truth")
    if len(z) != len(t):
        raise ValueError(f"latent ({len(z)}) and truth ({len(t)}) differ in N")
    if not 1 <= k < len(z):
        raise ValueError(f"k must be in [1, N-1] = [1, {len(z) - 1}], got {k}")
    lat_idx, _ = _knn(z, k)
    _, t_dist = _knn(t, k)
    radius = t_dist[:, -1]
    d = np.linalg.norm(t[lat_idx] - t[:, None, :], axis=-1)  # (N, k)
    tol = 1e-9 * max(1.0, float(np.abs(t).max()))
    return float((d <= radius[:, None] + tol).mean())


def rank_correlation(latent: object, true_coord: object) -> float:
    """|Spearman rho| between the latent and a 1D true coordinate, sign-invariant.

    latent (N,) or (N, Z); true_coord (N,). For Z > 1 the best of the Z axes and the
    first principal component is reported. A constant latent scores 0.
    """
    z = as_2d(latent, "latent")
    c = as_2d(true_coord, "true_coord")
    if c.shape[1] != 1:
        raise ValueError(f"true_coord must be 1D (N,), got shape {c.shape}")
    if len(z) != len(c):
        raise ValueError(f"latent ({len(z)}) and true_coord ({len(c)}) differ in N")
    if len(z) < 3:
        raise ValueError("rank_correlation needs at least 3 particles")
    if np.ptp(c) == 0:
        raise ValueError("true_coord is constant: no rank correlation defined")
    cols = [z[:, j] for j in range(z.shape[1])]
    if z.shape[1] > 1 and np.ptp(z, axis=0).max() > 0:
        cols.append(PCA(n_components=1, random_state=0).fit_transform(z)[:, 0])
    best = 0.0
    for col in cols:
        if np.ptp(col) == 0:
            continue
        rho = spearmanr(col, c[:, 0]).statistic
        if np.isfinite(rho):
            best = max(best, abs(float(rho)))
    return best
