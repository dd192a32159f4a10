"""Stochastic hill climbing region by region (issue 12; :mod:`tomohet.methods.factorial`).

A joint K-class climb over the union of discovery's regions scores every particle
against K references each averaged from about N / K particles; when the states differ
by small components, the references' difference is buried in their noise and the climb
wanders (ladder ``m05-snr0.3``: ARI 0.27, oracle 0.98). Here each region of
:mod:`tomohet.methods.discovery` is climbed in two classes (present / absent): the
references are averaged from about N / 2 particles each, inside that region's mask
only, with the whole consensus subtracted (the references are differences from the
consensus). The joint classes are the products (:func:`~tomohet.methods.factorial.
region_posteriors`, hard labels: one-hot posteriors), followed by hierarchical two-class
splits while there are fewer classes than K.

Four things differ from the joint climb inside a split (``SHC._region_split``), each
because the references are differences from the consensus:

* the figure-of-merit filter (:func:`~tomohet.methods.shc_scoring.figure_of_merit_filter`)
  measures the half-map FSC inside the region, not over the box: outside it the
  difference maps hold the consensus's misfit, the same in both halves, which passed for
  signal and left the region's noise undamped. Ladder m05, region 0 from discovery's
  start (0.99 of the particles on the right side): 0.66 after two annealed climbs with
  the box FSC, 0.96 after four with the region's (1.00 without annealing);
* one filter for both classes (their mean FSC), so what both differ from the consensus
  by cancels between their scores;
* scores are distances, ``Re<X, HV> - |HV|^2 / 2``
  (:func:`~tomohet.methods.shc_scoring.distance_from_sums`): two difference maps can
  point nearly the same way, which normalised cross-correlation cannot tell apart;
* no renaming of half 1's classes: both halves start from the same labels.

STOPGAP semantics are kept: every one of the ``n_runs`` runs does the whole region path
with its own seed (annealing draws), giving one hard labelling per run; the runs are
aligned and voted as for the joint climb (:func:`~tomohet.methods.consistency.align_runs`),
so a particle's consistency is still the fraction of runs agreeing with its class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tomohet.methods.em import EMEngine
from tomohet.methods.factorial import region_posteriors
from tomohet.methods.ml import ML2D
from tomohet.methods.region_refine import refine_region
from tomohet.methods.region_test import RegionTest, em_region_test

if TYPE_CHECKING:
    from tomohet.methods.discovery import Setup

__all__ = ["climb_regions", "uses_regions"]

# the smallest share of particles a combination of region states must take to be kept
MIN_CLASS_FRACTION = 0.02


def uses_regions(shc: Any, setup: Setup) -> bool:
    """Whether :class:`~tomohet.methods.shc.SHC` classifies region by region:
    ``split="regions"``, ``focus_mask="auto"``, a local region found and started from
    its components, or none found but candidates for the held-out test (as
    :class:`~tomohet.methods.ml.MLClassifier`)."""
    found = setup.discovery
    if found is None or not (shc.split == "regions" and isinstance(shc.focus_mask, str)
                             and shc.focus_mask == "auto" and setup.consensus is not None
                             and shc.n_classes >= 2):
        return False
    return ((setup.from_components and found.region == "local" and len(found.regions) > 0)
            or (shc.init == "components" and found.region == "none"
                and len(found.candidates) > 0))


def _climb_split(shc: Any, setup: Setup, halves: np.ndarray, band_fn: Callable,
                 seed: int, sigma2: torch.Tensor, members: np.ndarray,
                 mask: torch.Tensor, init: np.ndarray
                 ) -> tuple[np.ndarray, list[dict[str, Any]], torch.Tensor]:
    """Two-class climb of the particles at ``members`` (positions into
    ``setup.plain.index``) inside ``mask``, the whole consensus subtracted, from
    ``init``. -> (one-hot posteriors (len(members), 2), climb history, ``sigma2``)."""
    from tomohet.methods.discovery import Setup

    plain, found = setup.plain, setup.discovery
    assert setup.consensus is not None and found is not None
    engine = EMEngine(plain.particles, dataclasses.replace(plain.cfg, n_classes=2),
                      plain.index[members], plain.reference_mask, mask.to(plain.device),
                      setup.consensus.to(plain.device), progress=plain.progress,
                      subtract_all=True)
    binary = shc.__class__(**{**shc.get_params(), "n_classes": 2, "focus_mask": None,
                              "references": None, "n_runs": 1, "progress": False})
    binary._region_split = True  # distance scores, shared filter (module doc)
    binary.discovery_ = dataclasses.replace(found, focus=mask, labels=np.asarray(init))
    binary.setup_ = Setup(engine, plain, binary.discovery_, True, mask, setup.consensus)
    labels, history = binary._run(engine, halves[members], band_fn, seed)
    return np.eye(2)[labels], history, sigma2


def climb_regions(shc: Any, setup: Setup, halves: np.ndarray, band_fn: Callable,
                  seeds: list[int]) -> tuple[np.ndarray, list[list[dict[str, Any]]]] | None:
    """One region-by-region classification per seed. -> (labels (R, N), one history per
    run: the splits' climbs one after the other, ``stage`` "region split" or "class
    split" as in :func:`~tomohet.methods.factorial.region_posteriors`); None when
    discovery found no region and none of its candidates held (the caller falls back)."""
    plain = setup.plain
    assert setup.consensus is not None
    n = len(plain.index)
    # the noise of the consensus residuals, for the residual maps of the class splits
    sigma2 = plain.noise_pass(setup.consensus[None], np.zeros(n, dtype=np.int64)).sigma2
    runs, histories = [], []
    tested: dict[int, RegionTest] = {}

    def test(mask: torch.Tensor, fold_labels: np.ndarray) -> RegionTest:
        # the held-out test of a further region: focused EM (the climb has no evidence),
        # once per candidate for all seeds
        if id(mask) not in tested:
            em = ML2D(random_state=seeds[0])  # its engines take the climb's settings
            tested[id(mask)] = em_region_test(em, setup, plain.particles, mask,
                                              fold_labels, halves, seeds[0])
        return tested[id(mask)]

    def redraw(post: np.ndarray, mask: torch.Tensor, exclude: list[torch.Tensor]):
        return refine_region(setup, post, halves, mask, exclude)

    for seed in seeds:
        def split(members: np.ndarray, mask: torch.Tensor, init: np.ndarray,
                  seed: int = seed):
            return _climb_split(shc, setup, halves, band_fn, seed, sigma2, members, mask,
                                init)

        result = region_posteriors(setup, split, shc.n_classes, halves,
                                   MIN_CLASS_FRACTION, seeds[0], test, redraw=redraw)
        if result is None:  # no region and no candidate held (the same for every seed)
            return None
        post, history, _ = result
        runs.append(post.argmax(1))
        histories.append(history)
    return np.stack(runs), histories
