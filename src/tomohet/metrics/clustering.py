"""Scores of discrete class assignments against the true states.

Labels may be any hashable values (ints, strings); they are encoded to ``0..K-1`` in
sorted order, so ``-1`` (e.g. "not classified") is simply one more class. Predicted and
true label sets need not have the same size: :func:`hungarian_mapping` matches them
one-to-one and leaves the surplus unmatched.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = [
    "ari", "nmi", "hungarian_accuracy", "hungarian_mapping", "confusion_matrix",
    "population_error", "PopulationError", "check_labels",
]


def check_labels(true: object, pred: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate two label vectors and encode each to ``0..K-1``.

    true, pred (N,) -> two (N,) int64 arrays. Raises ValueError on shape mismatch, empty
    input, more than one dimension or NaN labels.
    """
    out = []
    for name, lab in (("true", true), ("pred", pred)):
        a = np.asarray(lab.detach().cpu() if hasattr(lab, "detach") else lab)
        if a.ndim != 1:
            raise ValueError(f"{name} labels must be 1D (N,), got shape {a.shape}")
        if a.size == 0:
            raise ValueError(f"{name} labels are empty")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"{name} labels contain NaN or inf")
        out.append(np.unique(a, return_inverse=True)[1].astype(np.int64).reshape(-1))
    if len(out[0]) != len(out[1]):
        raise ValueError(f"true and pred have different lengths: {len(out[0])} vs {len(out[1])}")
    return out[0], out[1]


def ari(true: object, pred: object) -> float:
    """Adjusted Rand index (1 = identical partitions, ~0 = chance). (N,), (N,) -> float."""
    t, p = check_labels(true, pred)
    return float(adjusted_rand_score(t, p))


def nmi(true: object, pred: object) -> float:
    """Normalised mutual information (arithmetic mean normalisation). (N,), (N,) -> float."""
    t, p = check_labels(true, pred)
    return float(normalized_mutual_info_score(t, p))


def confusion_matrix(true: object, pred: object, match: bool = False) -> np.ndarray:
    """Counts ``C[i, j]`` of particles with true class i and predicted class j.

    true, pred (N,) -> (K_true, K_pred) int64, classes in sorted label order. With
    ``match`` the predicted columns are reordered so that Hungarian-matched classes sit on
    the diagonal (unmatched predicted classes last).
    """
    t, p = check_labels(true, pred)
    kt, kp = int(t.max()) + 1, int(p.max()) + 1
    c = np.zeros((kt, kp), dtype=np.int64)
    np.add.at(c, (t, p), 1)
    if match:
        rows, cols = linear_sum_assignment(c, maximize=True)
        order = list(cols[np.argsort(rows)]) + [j for j in range(kp) if j not in set(cols)]
        c = c[:, order]
    return c


def hungarian_mapping(true: object, pred: object) -> dict[int, int]:
    """One-to-one map predicted class -> true class maximising agreement.

    Keys and values are the encoded (sorted-order) class indices; predicted classes beyond
    ``min(K_true, K_pred)`` are absent from the map.
    """
    c = confusion_matrix(true, pred)
    rows, cols = linear_sum_assignment(c, maximize=True)
    return {int(j): int(i) for i, j in zip(rows, cols, strict=True)}


def hungarian_accuracy(true: object, pred: object) -> float:
    """Fraction of particles correctly classified after the best one-to-one class match.

    true, pred (N,) -> float in [0, 1]. Particles in unmatched predicted classes (when
    K_pred > K_true) count as wrong.
    """
    c = confusion_matrix(true, pred)
    rows, cols = linear_sum_assignment(c, maximize=True)
    return float(c[rows, cols].sum() / c.sum())


class PopulationError(NamedTuple):
    """Absolute errors of class fractions after matching: mean and max over classes."""

    mean: float
    max: float


def population_error(true: object, pred: object) -> PopulationError:
    """Class-fraction error after Hungarian matching.

    true, pred (N,) -> (mean, max) of ``|f_true(k) - f_pred(m(k))|`` over the union of
    classes: an unmatched true class has predicted fraction 0 and an unmatched predicted
    class true fraction 0. A relabelled perfect prediction gives (0, 0).
    """
    c = confusion_matrix(true, pred)
    n = c.sum()
    kt, kp = c.shape
    size = max(kt, kp)
    sq = np.zeros((size, size), dtype=np.int64)
    sq[:kt, :kp] = c
    rows, cols = linear_sum_assignment(sq, maximize=True)
    f_true = np.zeros(size)
    f_true[:kt] = c.sum(1) / n
    f_pred = np.zeros(size)
    f_pred[:kp] = c.sum(0) / n
    err = np.abs(f_true[rows] - f_pred[cols])
    return PopulationError(float(err.mean()), float(err.max()))
