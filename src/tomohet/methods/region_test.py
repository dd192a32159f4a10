"""Is a further region real? A held-out likelihood test of a two-class split (issue 12).

:func:`~tomohet.methods.detection.detect` asks whether any voxel's variance over the
particles exceeds noise. Its statistic is the *energy* of the residual in a voxel
neighbourhood; it ignores that a component which comes and goes is one fixed pattern
(a rank-one change), and its null is the maximum over the whole particle. A small second
component therefore often stays below the threshold although the particles can be told
apart one by one: on the ladder cell ``m02-snr0.3-n300`` component B peaks at z 3.5-4.0
against a 99% null point of 5.0, yet a two-class EM inside B's true region reaches ARI
0.41 on B (the oracle 0.64), and the four-state ARI would rise from 0.44 to ~0.6.

When the user asks for more classes than the significant regions give, each further
candidate region (the next peaks of the z-map inside the particle) is tested the way a
model is validated: on held-out particles.

For each gold-standard half ``f``:

1. a two-class model inside the region is fitted on half ``f`` alone (started from
   k-means on half ``f``'s own residual maps, so nothing is chosen on the other half);
2. every particle ``n`` of the other half gets the log-evidence gain
   ``g_n = log(pi_0 p(x_n | v_0) + pi_1 p(x_n | v_1)) - log p(x_n | u)``, ``u`` the
   reference map.

A split that fits only noise predicts held-out particles worse than one map
(``E g < 0``); a real component predicts them better. The statistic is
``z = mean(g) / (sd(g) / sqrt(N))`` over both halves, one-sided ``p = 1 - Phi(z)``
(conservative: under the null the mean gain is negative, or ~0 when the split shrinks to
one map, hence also :data:`MIN_TOTAL_GAIN_NATS`).

The reference ``u`` is the split's own mean ``pi_0 v_0 + pi_1 v_1`` (:func:`em_region_test`),
so that only the classes' *difference* is tested. Not the consensus: it is
Wiener-filtered and misses density in every region, which any fitted map recovers (a
region with no heterogeneity gained z 10 against it on ``m05-snr0.05``). Not a separately
fitted one-class model either: its map is filtered by its own FSC, the mixture's mean by
the classes', and that difference alone predicted held-out particles on data with
**one** state (every particle the same complex, 500 particles at SNR 0.05: z 8.7,
85 nats; against the split's own mean: see ``benchmarks/README.md``).

:func:`heldout_test` is the orchestration over callables (pure given them);
:func:`em_region_test` plugs in focused EM (:class:`~tomohet.methods.ml.MLClassifier`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tomohet.data.keys import keyed_order
from tomohet.methods.dispersion import estimate_dispersion
from tomohet.methods.em import EMEngine, EMState

if TYPE_CHECKING:
    from tomohet.methods.discovery import Setup

__all__ = ["RegionTest", "MIN_TOTAL_GAIN_NATS", "heldout_test", "sub_halves",
           "em_region_test", "focused_engine", "focused_fit", "gain_z", "regional_setup"]


# The least held-out evidence a further region must bring, summed over the particles: a
# Bayes factor of 100 ("decisive" on Jeffreys' scale). The z-test alone is not enough
# when a split has shrunk to one map (focused EM filters the classes' difference by its
# own FSC): every particle then gains ~0 nats, and the z of such gains is that of
# rounding (a one-component null at K = 4 passed at z 3.11 with a mean gain of 0.0000).
MIN_TOTAL_GAIN_NATS = math.log(100.0)
# a region's own dispersion is applied above this (its sampling error with 300 particles
# and 4 fields is about 0.04)
MIN_REGION_DISPERSION = 1.1


@dataclasses.dataclass
class RegionTest:
    """``gain`` (N,) held-out log-evidence gain per particle (nats; each particle
    evaluated by the models fitted on the other half); ``z``, one-sided ``p``."""

    gain: np.ndarray
    z: float
    p: float
    dispersion: float = 1.0  # the region's own over-count, relative to the run's

    def accepts(self, level: float) -> bool:
        """Real at ``level``: ``p <= level`` and a summed gain of at least
        :data:`MIN_TOTAL_GAIN_NATS`."""
        return self.p <= level and float(np.sum(self.gain)) >= MIN_TOTAL_GAIN_NATS

    def summary(self) -> dict[str, float]:
        return {"z": round(self.z, 2), "p": round(self.p, 5),
                "mean_gain_nats": round(float(self.gain.mean()), 4),
                "total_gain_nats": round(float(self.gain.sum()), 2),
                "region_dispersion": round(self.dispersion, 3)}


def gain_z(gain: np.ndarray) -> tuple[float, float]:
    """(z, one-sided p) of the mean of per-particle gains (N,) being > 0."""
    g = np.asarray(gain, dtype=float)
    if len(g) < 2:
        return 0.0, 1.0
    sd = float(g.std(ddof=1))
    if not sd > 0:  # every gain equal (the split's maps shrank to nothing): no evidence
        return 0.0, 1.0
    z = float(g.mean()) / (sd / math.sqrt(len(g)))
    return z, 0.5 * math.erfc(z / math.sqrt(2.0))


# (train positions, their two-class start labels) -> fitted two-class model;
# (test positions, two-class model) -> (len(test),) gains over its reference (module doc)
Fit2 = Callable[[np.ndarray, np.ndarray], Any]
Evaluate = Callable[[np.ndarray, Any], np.ndarray]


def heldout_test(halves: np.ndarray, fold_labels: np.ndarray, fit2: Fit2,
                 evaluate: Evaluate) -> RegionTest:
    """The two-fold held-out test (module doc). halves (N,) 0/1; fold_labels (N,) each
    particle's two-class start label from k-means on its own half only."""
    halves = np.asarray(halves)
    gain = np.zeros(len(halves))
    for f in (0, 1):
        train = np.nonzero(halves == f)[0]
        test = np.nonzero(halves != f)[0]
        if len(train) < 4 or len(test) < 2:
            return RegionTest(gain, 0.0, 1.0)
        two = fit2(train, np.asarray(fold_labels)[train])
        gain[test] = evaluate(test, two)
    z, p = gain_z(gain)
    return RegionTest(gain, z, p)


def sub_halves(names, tomo_names, members: np.ndarray, seed: int) -> np.ndarray:
    """(len(members),) 0/1: a balanced keyed split of ``members`` (positions into
    ``names``) for the gold-standard half maps of a model fitted on them alone."""
    order = keyed_order([names[i] for i in members], [tomo_names[i] for i in members],
                        seed, stream="region-test/sub")
    out = np.zeros(len(members), dtype=np.int64)
    out[order[1::2]] = 1
    return out


def focused_engine(setup: Setup, members: np.ndarray, mask: torch.Tensor, k: int,
                   progress: Callable[[int], None] | None = None) -> EMEngine:
    """A K-class EM engine on the particles at positions ``members`` (into
    ``setup.plain.index``), focused on ``mask`` (D, D, D) with the whole consensus
    subtracted: its class maps are differences from the consensus."""
    plain, consensus = setup.plain, setup.consensus
    assert consensus is not None
    return EMEngine(plain.particles, dataclasses.replace(plain.cfg, n_classes=k),
                    plain.index[members], plain.reference_mask, mask.to(plain.device),
                    consensus.to(plain.device), progress=progress, subtract_all=True)


def focused_fit(model: Any, setup: Setup, particles: Any, members: np.ndarray,
                mask: torch.Tensor, labels: np.ndarray, halves: np.ndarray,
                progress: Callable[[int], None] | None = None) -> EMState:
    """``model`` (an ML classifier with ``n_classes`` K) fitted by
    :func:`focused_engine` EM from ``labels`` (len(members),), not annealed, with
    ``halves`` (len(members),) for its half maps: the region splits of
    :mod:`tomohet.methods.factorial` and the fits of the held-out test."""
    assert setup.discovery is not None
    engine = focused_engine(setup, members, mask, model.n_classes, progress)
    model.discovery_ = dataclasses.replace(setup.discovery, focus=mask, labels=labels)
    model.setup_ = dataclasses.replace(setup, engine=engine, from_components=True,
                                       focus=mask)
    state = model._initialise(engine, particles, members, halves, 0)
    return model._iterate(engine, state, halves, model.n_iter, None)


def em_region_test(clf: Any, setup: Setup, particles: Any, mask: torch.Tensor,
                   fold_labels: np.ndarray, halves: np.ndarray, seed: int) -> RegionTest:
    """:func:`heldout_test` with :func:`focused_fit` inside ``mask`` (D, D, D):
    ``clf`` an ML classifier whose class and parameters make the two-class model
    (started from ``fold_labels``, not annealed); the reference is its own mean."""
    setup, rel = regional_setup(setup, mask, seed)
    plain = setup.plain
    params = {**clf.get_params(), "focus_mask": None, "checkpoint_dir": None,
              "progress": False, "n_restarts": 1}

    def fit(members: np.ndarray, labels: np.ndarray) -> EMState:
        model = clf.__class__(**{**params, "n_classes": int(labels.max()) + 1})
        sub = sub_halves(plain.names, plain.tomo_names, members, seed)
        return focused_fit(model, setup, particles, members, mask, labels, sub)

    def fit2(members: np.ndarray, labels: np.ndarray) -> EMState:
        return fit(members, (np.asarray(labels) > 0).astype(np.int64))

    def evaluate(members: np.ndarray, two: EMState) -> np.ndarray:
        # one pass with the three maps: the split's own mean at prior 1/2, so that its
        # posterior p gives the evidence ratio (1 - p) / p of the mixture to it
        pri = two.priors.double() / 2
        w = two.priors.double() / two.priors.double().sum().clamp_min(1e-300)
        mean = (w.view(-1, 1, 1, 1) * two.volumes.double()).sum(0, keepdim=True).float()
        state = EMState(volumes=torch.cat([two.volumes, mean]),
                        priors=torch.cat([pri, torch.tensor([0.5], dtype=torch.float64)]
                                         ).float(),
                        sigma2=two.sigma2, posteriors=np.zeros((len(members), 3)),
                        fsc=[*two.fsc, two.fsc[0]])
        engine = focused_engine(setup, members, mask, 3)
        _, _, post, _ = engine.em_pass(state, np.zeros(len(members), np.int64))
        p_one = np.clip(post[:, 2], 1e-300, 1.0)
        return np.log(np.clip(1.0 - p_one, 1e-300, 1.0)) - np.log(p_one)

    return dataclasses.replace(heldout_test(halves, fold_labels, fit2, evaluate),
                               dispersion=rel)


def regional_setup(setup: Setup, mask: torch.Tensor, seed: int) -> tuple[Setup, float]:
    """``setup`` whose engines temper the likelihood by the region's own dispersion when
    it exceeds the run's (:mod:`tomohet.methods.dispersion`, fields inside ``mask``).

    The run's factor is measured over the whole reference mask. Where the noise is not
    stationary in real space (subtomograms whose gridding leaves more noise in the
    centre of the box than at its edges: 1.0 -> 0.5 from centre to edge, measured on
    simulated ones), a region inside the particle holds more noise than that average,
    and a two-class split there fits the excess: on one-state subtomograms the held-out
    test accepted such a region (z 3.5, 27 nats). -> (setup, factor relative to the
    run's, >= 1 only where applied)."""
    plain = setup.plain
    if setup.noise is None or setup.consensus is None:
        return setup, 1.0
    rel = estimate_dispersion(plain, setup.consensus.to(plain.device), setup.noise,
                              seed=seed, support=(mask > 0.5).float().cpu())
    if not rel > MIN_REGION_DISPERSION:
        return setup, rel
    local = copy.copy(plain)
    local.cfg = dataclasses.replace(plain.cfg,
                                    noise_dispersion=plain.cfg.noise_dispersion * rel)
    return dataclasses.replace(setup, plain=local), rel
