"""Scores of one method's outputs against the truth, shared by ``bench`` and ``evaluate``.

Inputs are the true states (N,) and/or coordinates (N, C), and the method's labels (N,)
and/or latent (N, Z). Which metrics apply follows from what is available:

* states with K > 1 and labels (or a latent, clustered by k-means with K = true number
  of states): ``ari``, ``nmi``, ``accuracy``, ``pop_err_mean``, ``pop_err_max``;
* coordinates and a latent: ``rank_corr`` (against ``c0``) and ``neigh_sim``;
* states only and a latent: ``neigh_sim`` (k-NN label purity).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tomohet import metrics
from tomohet.methods.clustering import kmeans
from tomohet.physics.fourier import soft_sphere_mask

if TYPE_CHECKING:
    from tomohet.bench.datasets import BenchDataset
    from tomohet.bench.records import MethodRun

__all__ = ["score_outputs", "score_run", "oracle_fractions", "scoring_mask",
           "HIGHER_IS_BETTER", "METRIC_LABELS"]

# metrics whose ratio to the oracle's value is reported as <metric>_frac_oracle
HIGHER_IS_BETTER = ["ari", "nmi", "accuracy", "rank_corr", "neigh_sim", "fsc_auc"]
METRIC_LABELS = {
    "ari": "ARI", "nmi": "NMI", "accuracy": "accuracy", "pop_err_mean": "pop. err. (mean)",
    "pop_err_max": "pop. err. (max)", "rank_corr": "|Spearman|", "neigh_sim": "neigh. sim.",
    "fsc_auc": "FSC AUC", "fsc_res_A": "FSC=0.5 res. (A)",
    "ari_kept": "ARI (kept)", "kept_frac": "kept",
}


def scoring_mask(box: int) -> torch.Tensor:
    """The region the benchmark judges maps in (per-particle FSC, class differences):
    a soft sphere of radius ``max(box/2 - 3, box/4)`` px with a 2 px edge (D, D, D).

    Deliberately not a method's default mask (:func:`tomohet.methods.base.default_mask`):
    the scores must not move when a method's defaults do.
    """
    return soft_sphere_mask(box, max(box / 2 - 3, box / 4), edge_px=2.0)


def score_outputs(
    states: np.ndarray | None,
    coords: np.ndarray | None,
    labels: np.ndarray | None = None,
    latent: np.ndarray | None = None,
    seed: int = 0,
    k_neighbours: int = 20,
) -> dict[str, Any]:
    """Every applicable metric (see module doc) as a flat dict of floats.

    states (N,) int or None; coords (N, C) or None; labels (N,) or None; latent (N, Z) or
    None. Adds ``ari_source`` = "labels" or "kmeans" when clustering scores were computed.
    """
    out: dict[str, Any] = {}
    n_states = 0 if states is None else len(np.unique(states))
    if n_states > 1:
        lab, source = labels, "labels"
        if lab is None and latent is not None:
            z = metrics.latent.as_2d(latent, "latent")
            lab, source = kmeans(z, n_states, seed, n_init=4).labels, "kmeans"
        if lab is not None:
            lab = np.asarray(lab)
            pe = metrics.population_error(states, lab)
            out.update(ari=metrics.ari(states, lab), nmi=metrics.nmi(states, lab),
                       accuracy=metrics.hungarian_accuracy(states, lab),
                       pop_err_mean=pe.mean, pop_err_max=pe.max, ari_source=source)
    if latent is not None:
        z = metrics.latent.as_2d(latent, "latent")
        k = int(min(k_neighbours, len(z) - 1))
        if coords is not None:
            c = metrics.latent.as_2d(coords, "coords")
            out["rank_corr"] = metrics.rank_correlation(z, c[:, 0])
            truth = metrics.truth_embedding(states if n_states > 1 else None, c)
            out["neigh_sim"] = metrics.neighbourhood_similarity(z, truth, k)
        elif n_states > 1:
            out["neigh_sim"] = metrics.neighbourhood_similarity(
                z, metrics.truth_embedding(states), k)
    return out


def oracle_fractions(scores: dict[str, Any], oracle: dict[str, Any]) -> dict[str, float]:
    """``<metric>_frac_oracle`` = method / oracle for higher-is-better metrics present in
    both (NaN when the oracle scores <= 0)."""
    out = {}
    for m in HIGHER_IS_BETTER:
        a, b = scores.get(m), oracle.get(m)
        if a is None or b is None or not np.isfinite(a) or not np.isfinite(b):
            continue
        out[f"{m}_frac_oracle"] = float(a / b) if b > 0 else float("nan")
    return out


def score_run(run: MethodRun, ds: BenchDataset, seed: int) -> None:
    """Fill ``run.scores`` (metrics of :func:`score_outputs` plus FSC)."""
    if run.error:
        return
    try:
        run.scores = score_outputs(ds.states, ds.coords, run.labels, run.latent, seed)
    except ValueError as exc:  # e.g. a NaN latent: keep the class scores, note why
        try:
            run.scores = score_outputs(ds.states, ds.coords, run.labels, None, seed)
            run.warnings.append(f"latent not scored: {exc}")
        except ValueError as exc2:
            run.error = f"scoring: {exc2}"
    if run.kept is not None and run.labels is not None and run.kept.any():
        k = run.kept & (run.labels >= 0)
        run.scores["kept_frac"] = float(run.kept.mean())
        run.scores["ari_kept"] = float(metrics.ari(ds.states[k], run.labels[k]))
    if run.fsc is not None:
        run.scores["fsc_auc"] = run.fsc.mean_auc
        run.scores["fsc_res_A"] = float(np.mean(run.fsc.resolution_A))
