"""Consistency over several classification runs: classes renamed to agree (Hungarian
algorithm on label overlap), then per-particle votes. Used by :mod:`tomohet.methods.shc`."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["match_labels", "align_runs"]


def match_labels(reference: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Relabel ``labels`` so its classes best overlap ``reference`` (Hungarian)."""
    overlap = np.zeros((k, k))
    ok = (reference >= 0) & (labels >= 0)
    np.add.at(overlap, (labels[ok], reference[ok]), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = np.arange(k)
    mapping[rows] = cols
    return np.where(labels >= 0, mapping[np.clip(labels, 0, None)], -1)


def align_runs(runs: np.ndarray, k: int) -> np.ndarray:
    """Rename every run's classes to match the medoid run (the one agreeing most with
    the others after Hungarian matching), so one run stuck in a local optimum cannot
    become the reference the others are voted against. (R, N) -> (R, N)."""
    r = runs.shape[0]
    if r == 1:
        return runs
    agree = np.zeros((r, r))
    for i in range(r):
        for j in range(r):
            if i != j:
                agree[i, j] = (match_labels(runs[i], runs[j], k) == runs[i]).mean()
    ref = int(agree.sum(1).argmax())
    return np.stack([runs[ref] if i == ref else match_labels(runs[ref], runs[i], k)
                     for i in range(r)])
