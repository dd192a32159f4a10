"""Annealing schedule and re-seeding of emptied classes for the ML classifiers.

A mixin of :class:`tomohet.methods.ml.MLClassifier` (kept apart so that module stays a
readable size): the deterministic-annealing cap per iteration and the re-seeding of a
class that emptied, with halves drawn from the particle names (:mod:`tomohet.data.keys`).
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet.data.keys import keyed_order
from tomohet.methods.em import EMEngine, EMState

__all__ = ["AnnealReseed"]


class AnnealReseed:
    """Needs ``n_classes``, ``anneal_iters``, ``anneal_strength``, ``min_class_fraction``
    and ``_seed()`` on the class it is mixed into."""

    n_classes: int
    anneal_iters: int
    anneal_strength: float
    min_class_fraction: float

    def _seed(self) -> int:
        raise NotImplementedError

    def _keyed_split(self, engine: EMEngine, rows: np.ndarray, n_parts: int,
                     stream: str) -> np.ndarray:
        """Balanced split of ``rows`` (positions into the engine's index) into parts
        0..n_parts-1, drawn from the particles' names (keyed hash), not their rows."""
        order = keyed_order([engine.names[i] for i in rows],
                            [engine.tomo_names[i] for i in rows], self._seed(), stream)
        part = np.empty(len(rows), dtype=np.int64)
        part[order] = np.arange(len(rows)) % n_parts
        return part

    def _revive_empty(self, engine: EMEngine, state: EMState, halves,
                      n_iter: int) -> EMState | None:
        """Re-seed classes that hold fewer than ``min_class_fraction`` of the particles.

        An emptied class means two states share the largest class (EM cannot split it
        again by itself): the empty class takes a random half of the largest class's
        particles (drawn from their names) and the posteriors are annealed again from
        there, so that the split settles along the largest difference inside that class.
        Only while a whole annealing schedule and two more iterations remain before
        ``n_iter`` (the end of the whole run). Returns the new state (its annealing
        restarts at its iteration), or None when no class is empty.
        """
        k, it = self.n_classes, state.iteration
        if self.min_class_fraction <= 0 or k < 2 or it > n_iter - self.anneal_iters - 2:
            return None
        labels = state.posteriors.argmax(1)
        counts = np.bincount(labels, minlength=k)
        empty = np.nonzero(counts < self.min_class_fraction * len(labels))[0]
        if len(empty) == 0:
            return None
        labels = labels.copy()
        for e in empty:
            big = int(np.bincount(labels, minlength=k).argmax())
            members = np.nonzero(labels == big)[0]
            half = self._keyed_split(engine, members, 2, f"ml-reseed/{it}/{int(e)}")
            labels[members[half == 1]] = e
        weights = np.eye(k)[labels]
        vols, curves, res = engine.volumes_from(engine.reconstruct_pass(weights, None, halves))
        priors = torch.as_tensor(weights.mean(0), dtype=torch.float32)
        last = dict(state.history[-1], revived=[int(e) for e in empty])
        return EMState(volumes=vols, priors=priors, sigma2=state.sigma2, posteriors=weights,
                       iteration=it, log_likelihood=state.log_likelihood, anneal_from=it,
                       fsc=curves, resolution_A=res, history=state.history[:-1] + [last],
                       particles=engine.fingerprint)

    def _anneal_cap(self, iteration: int) -> float | None:
        """Deterministic annealing: the cap on each particle's largest posterior at
        ``iteration`` (0-based) of the schedule. It rises linearly from
        1/K + (1 - anneal_strength)(1 - 1/K) to 1 over ``anneal_iters``; None (true
        posteriors) afterwards or with ``anneal_strength`` 0."""
        if (iteration >= self.anneal_iters or self.n_classes < 2
                or self.anneal_strength <= 0):
            return None
        strength = min(float(self.anneal_strength), 1.0)
        floor = 1.0 / self.n_classes + (1.0 - strength) * (1.0 - 1.0 / self.n_classes)
        return floor + (1.0 - floor) * iteration / self.anneal_iters

