"""How far two fits of one method agree (CPU vs CUDA, or CPU vs CPU as a self-check).

Used by ``benchmarks/gpu_check.py``; tested on hand-built cases in
``tests/test_gpu_check.py``. Numpy/scipy/scikit-learn only.

* Discrete: :func:`matched_classes` pairs the classes of fit B with those of fit A by the
  Hungarian assignment on their co-membership counts; :func:`map_correlations` gives the
  Pearson correlation of each matched pair of class maps.
* Continuous: :func:`linear_map_correlation` (correlation after the best affine map of one
  latent onto the other, the worse of the two directions), :func:`procrustes_correlation`
  (after centring, scaling and the best rotation/reflection), :func:`kmeans_labels` (the
  latent clustered with K = number of true states).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import procrustes
from sklearn.cluster import KMeans

__all__ = ["matched_classes", "map_correlations", "pearson", "linear_map_correlation",
           "procrustes_correlation", "kmeans_labels"]


def _labels(x: object, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1D label vector, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    return a.astype(np.int64)


def matched_classes(labels_a: object, labels_b: object) -> list[tuple[int, int, int]]:
    """Hungarian pairing of the classes of B with those of A.

    labels (N,) integer class indices (negative = unclassified, left out) -> list of
    ``(class_a, class_b, shared particles)``, one per matched pair, sorted by class_a;
    pairs sharing no particle are left out (there is nothing to match them by).
    """
    a, b = _labels(labels_a, "labels_a"), _labels(labels_b, "labels_b")
    if len(a) != len(b):
        raise ValueError(f"labels_a ({len(a)}) and labels_b ({len(b)}) differ in N")
    both = (a >= 0) & (b >= 0)
    if not both.any():
        return []
    ka, kb = int(a[both].max()) + 1, int(b[both].max()) + 1
    counts = np.zeros((ka, kb), dtype=np.int64)
    np.add.at(counts, (a[both], b[both]), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return sorted((int(i), int(j), int(counts[i, j]))
                  for i, j in zip(rows, cols, strict=True) if counts[i, j] > 0)


def pearson(x: object, y: object) -> float:
    """Pearson correlation of two equally sized arrays (flattened); 0 if one is constant."""
    u = np.asarray(x, dtype=np.float64).ravel()
    v = np.asarray(y, dtype=np.float64).ravel()
    if u.shape != v.shape:
        raise ValueError(f"arrays differ in size: {u.size} vs {v.size}")
    u, v = u - u.mean(), v - v.mean()
    den = float(np.sqrt((u * u).sum() * (v * v).sum()))
    return float((u * v).sum() / den) if den > 0 else 0.0


def map_correlations(maps_a: object, maps_b: object, labels_a: object,
                     labels_b: object) -> list[dict[str, float | int]]:
    """Correlation of the class maps of two fits, classes paired by :func:`matched_classes`.

    maps (K, D, D, D) (any trailing shape), labels (N,) -> one dict per matched pair:
    ``class_a``, ``class_b``, ``particles`` (shared), ``corr``.
    """
    va, vb = np.asarray(maps_a), np.asarray(maps_b)
    if va.shape[1:] != vb.shape[1:]:
        raise ValueError(f"maps differ in shape: {va.shape} vs {vb.shape}")
    out: list[dict[str, float | int]] = []
    for i, j, shared in matched_classes(labels_a, labels_b):
        if i >= len(va) or j >= len(vb):
            raise ValueError(f"label {i} / {j} has no map ({len(va)} / {len(vb)} maps)")
        out.append({"class_a": i, "class_b": j, "particles": shared,
                    "corr": pearson(va[i], vb[j])})
    return out


def _latent(z: object, name: str) -> np.ndarray:
    a = np.asarray(z, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 3:
        raise ValueError(f"{name} must be (N, Z) with N >= 3, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _affine_fit_r2(target: np.ndarray, source: np.ndarray) -> float:
    """Pooled R^2 of the least-squares affine map source -> target."""
    x = np.column_stack([source, np.ones(len(source))])
    coef, *_ = np.linalg.lstsq(x, target, rcond=None)
    resid = target - x @ coef
    tot = ((target - target.mean(0)) ** 2).sum()
    if tot <= 0:
        return 0.0
    return float(max(0.0, 1.0 - (resid ** 2).sum() / tot))


def linear_map_correlation(z_a: object, z_b: object) -> float:
    """sqrt(R^2) of the best affine map of one latent onto the other, the smaller of the
    two directions (so a latent that collapsed in B does not score 1). (N, Z) x2 -> [0, 1];
    identical, rotated, scaled or shifted latents give 1; unrelated ones ~sqrt(Z / N)."""
    a, b = _latent(z_a, "z_a"), _latent(z_b, "z_b")
    if len(a) != len(b):
        raise ValueError(f"z_a ({len(a)}) and z_b ({len(b)}) differ in N")
    return float(np.sqrt(min(_affine_fit_r2(a, b), _affine_fit_r2(b, a))))


def procrustes_correlation(z_a: object, z_b: object) -> float:
    """sqrt(1 - disparity) of orthogonal Procrustes (centring, unit scale, best
    rotation/reflection): 1 for latents equal up to those, ~0 for unrelated ones."""
    a, b = _latent(z_a, "z_a"), _latent(z_b, "z_b")
    if a.shape != b.shape:
        raise ValueError(f"z_a {a.shape} and z_b {b.shape} differ in shape")
    if np.ptp(a, axis=0).max() == 0 or np.ptp(b, axis=0).max() == 0:
        return 0.0
    _, _, disparity = procrustes(a, b)
    return float(np.sqrt(max(0.0, 1.0 - disparity)))


def kmeans_labels(z: object, k: int, seed: int = 0) -> np.ndarray:
    """(N,) k-means labels of a latent (N, Z), 10 seeded starts."""
    a = _latent(z, "z")
    return KMeans(n_clusters=int(k), n_init=10, random_state=seed).fit_predict(a)
