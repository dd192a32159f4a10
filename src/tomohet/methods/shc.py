"""Stochastic hill climbing with simulated annealing and consistency cleaning (STOPGAP style).

Each iteration scores every particle against every candidate (class, and optionally small
rotations about its pose prior) with a missing-wedge/CTF/dose-aware normalised
cross-correlation under the reference mask, band-pass limited. Candidates are visited in a
random order per particle and the first that beats the current score is taken; while the
temperature ``T`` is above 0 a non-improving candidate is also accepted with probability
``T / 100`` (``T`` falls linearly to 0 over ``anneal_iters`` iterations; the schedule is
configurable). References are re-averaged each iteration by wedge-weighted averaging
(the same back-projection as maximum likelihood, hard assignments), separately for two
half sets: each particle is scored against the other half's references, which removes
the self-bias that otherwise freezes a random partition at low SNR.

Consistency cleaning: ``n_runs`` independent runs with different seeds; classes of each run
matched to the first by the Hungarian algorithm on their overlap; a particle's consistency
is the fraction of runs agreeing with its majority class. Particles below
``consistency_threshold`` are flagged (``consistent_ = False``), never silently dropped;
final class maps are averaged from consistent particles only.

By default (``focus_mask="auto"``, ``init="components"``) :mod:`tomohet.methods.discovery`
first looks for the region where the residuals against the consensus vary more than
noise: a local region is scored alone (signal outside subtracted) from a start on the
residual maps' leading components; a large one (whole subunits) gives that start without
a focus; nothing above noise gives random starts. Class maps are full maps either way.
``focus_mask=None, init="random"`` is the previous behaviour.

With a local region found, ``split="regions"`` (the default) climbs each of discovery's
regions in two classes, the whole consensus subtracted, and combines them
(:mod:`tomohet.methods.shc_regions`, :mod:`tomohet.methods.factorial`); every run does
the whole region path, and runs are voted as above. ``split="joint"`` is one K-class
climb over the union of the regions.

Passes run on the compacted pixels (issue 14; :mod:`tomohet.methods.shc_pass`): one pass
per iteration scores, climbs and re-averages, with one trilinear plan per image for all
K references. ``compact=False`` (and any local pose search) keeps the dense reference
path: a dense scoring pass (:func:`~tomohet.methods.shc_scoring.ncc_scores`), then a
dense reconstruction pass. ``cache_geometry_mb`` keeps the compacted batches (pixels,
transforms, trilinear plans) across iterations and runs within that budget
(:mod:`tomohet.methods.em_cache`; same results).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from tqdm.auto import tqdm

from tomohet import parallel
from tomohet.data.keys import half_sets, keyed_order, keyed_uniform_grid
from tomohet.io import load_volume
from tomohet.methods.base import (
    HeterogeneityMethod,
    ParticleSet,
    default_mask,
    register,
    resolve_device,
    seed_of,
)
from tomohet.methods.consistency import align_runs, match_labels
from tomohet.methods.discovery import discover_with
from tomohet.methods.em import EMConfig, EMEngine
from tomohet.methods.shc_pass import climb_pass
from tomohet.methods.shc_regions import climb_regions, uses_regions
from tomohet.methods.shc_scoring import (
    band_resolution,
    climb_step,
    figure_of_merit_filter,
    half_map_fsc,
    ncc_scores,
    rename_half_one,
    temperature_schedule,
)
from tomohet.physics.forward import model_transforms
from tomohet.physics.fourier import radial_shell_index
from tomohet.physics.reconstruction import wiener_reconstruct

__all__ = ["SHC", "ncc_scores", "match_labels", "align_runs", "temperature_schedule",
           "band_resolution"]


@register
class SHC(HeterogeneityMethod):
    """Stochastic hill-climbing classification with annealing and consistency cleaning."""

    name = "shc"
    kind = "discrete"
    input_kind = "either"
    bench_params = {"n_classes": 2, "n_iter": 10, "n_runs": 3, "anneal_iters": 4}

    def __init__(
        self,
        n_classes: int = 4,
        n_iter: int = 15,
        n_runs: int = 5,
        temperature: float = 10.0,
        anneal_iters: int = 5,
        references: Any = None,
        focus_mask: Any = "auto",
        init: str = "components",
        split: str = "regions",
        lowpass_A: float | None = None,
        highpass_A: float | None = None,
        mask_radius_A: float | None = None,
        local_search_deg: float = 0.0,
        consistency_threshold: float = 0.8,
        batch_size: int = 32,
        compact: bool = True,
        cache_geometry_mb: float = 0.0,
        device: str | None = None,
        progress: bool = True,
        random_state: int | None = None,
    ) -> None:
        self.n_classes = n_classes
        self.n_iter = n_iter
        self.n_runs = n_runs
        self.temperature = temperature
        self.anneal_iters = anneal_iters
        self.references = references
        self.focus_mask = focus_mask
        self.init = init
        self.split = split
        self.lowpass_A = lowpass_A
        self.highpass_A = highpass_A
        self.mask_radius_A = mask_radius_A
        self.local_search_deg = local_search_deg
        self.consistency_threshold = consistency_threshold
        self.batch_size = batch_size
        self.compact = compact
        self.cache_geometry_mb = cache_geometry_mb
        self.device = device
        self.progress = progress
        self.random_state = random_state

    # set by region splits (shc_regions) on their two-class climbs: scores by distance,
    # one figure-of-merit filter for both classes measured inside the region, and no
    # renaming of half 1's classes (both halves start from the same labels: class c is
    # one class in both). See shc_regions' module doc.
    _region_split = False

    # ------------------------------------------------------------------ helpers
    def _band(self, box: int, px: float, ndim: int, device: torch.device,
              resolution_A: float | None = None) -> torch.Tensor:
        """Shells scored: high-pass .. low-pass; without a user low-pass, the references'
        current FSC-0.143 resolution (adaptive, as noise past it only blurs the score)."""
        shell = radial_shell_index(box, ndim, device=device)
        lp = self.lowpass_A if self.lowpass_A is not None else resolution_A
        hi = box // 2 if lp is None else min(box // 2, box * px / lp)
        lo = 1 if self.highpass_A is None else box * px / self.highpass_A
        return (shell >= lo) & (shell <= hi)

    def _references(self, engine: EMEngine, labels: np.ndarray, halves: np.ndarray
                    ) -> tuple[torch.Tensor, float | None, np.ndarray]:
        """Half-set references (2K, D, D, D), their FSC resolution, and the labels.

        The two halves are classified independently, so class c of one half need not be
        class c of the other: half 1's classes are matched to half 0's by the Hungarian
        algorithm on map correlations, and half 1's labels renamed to match.
        """
        bp = engine.reconstruct_pass(np.eye(self.n_classes)[labels], None, halves)
        return self._references_from(engine, bp, labels, halves)

    def _references_from(self, engine: EMEngine, bp, labels: np.ndarray, halves: np.ndarray
                         ) -> tuple[torch.Tensor, float | None, np.ndarray]:
        """:meth:`_references` from the half-set sums ``bp`` of ``labels``."""
        k = self.n_classes
        maps = wiener_reconstruct(bp)
        if k > 1 and not self._region_split:
            h0 = maps[0::2].reshape(k, -1)
            h1 = maps[1::2].reshape(k, -1)
            h0 = (h0 - h0.mean(1, keepdim=True)) / h0.std(1, keepdim=True).clamp_min(1e-12)
            h1 = (h1 - h1.mean(1, keepdim=True)) / h1.std(1, keepdim=True).clamp_min(1e-12)
            corr = (h0 @ h1.T).cpu().numpy()
            rows, cols = linear_sum_assignment(-corr)  # half-1 class cols[i] == class rows[i]
            rename = np.empty(k, dtype=np.int64)
            rename[cols] = rows
            if not np.array_equal(rename, np.arange(k)):
                labels = labels.copy()
                labels[halves == 1] = rename[labels[halves == 1]]
                rename_half_one(bp, rename)
                maps = wiener_reconstruct(bp)
        # the classes' half-map FSC, as engine.volumes_from measures it (under the focus
        # mask), without its merged maps
        curves = half_map_fsc(maps, engine.focus_mask).cpu().numpy()
        inside = engine.focus_mask if self._region_split else None
        return (figure_of_merit_filter(maps.cpu(), self._region_split,
                                       None if inside is None else inside.cpu()),
                band_resolution(curves, engine.px),
                labels)

    def _keyed_labels(self, engine: EMEngine, seed: int, stream: str) -> np.ndarray:
        """Balanced random classes drawn from the particle names (keyed hash), or the
        partition from the residual maps' components (``init="components"``)."""
        setup = self.setup_
        if setup is not None and setup.from_components and self.discovery_ is not None:
            return self.discovery_.labels.copy()
        order = keyed_order(engine.names, engine.tomo_names, seed, stream)
        labels = np.empty(len(order), dtype=np.int64)
        labels[order] = np.arange(len(order)) % self.n_classes
        return labels

    def _initial_references(self, engine: EMEngine, halves, seed: int
                            ) -> tuple[torch.Tensor, float | None]:
        refs = self.references
        if refs is not None:
            if isinstance(refs, list | tuple):
                vols = [v for v in (load_volume(r) for r in refs) if v is not None]
                stack = torch.stack(vols) if vols else None
            else:
                stack = load_volume(refs)
            if stack is None or stack.ndim != 4 or stack.shape[0] != self.n_classes:
                raise ValueError(f"shc: references must be {self.n_classes} volumes")
            return stack.float().repeat_interleave(2, dim=0), None
        labels = self._keyed_labels(engine, seed, "shc-init-references")
        maps, res, _ = self._references(engine, labels, halves)
        return maps, res

    def _score_pass(self, engine: EMEngine, refs: torch.Tensor, band: torch.Tensor,
                    halves: np.ndarray) -> np.ndarray:
        """Scores (N, K, J) of every particle against every class and pose candidate.

        ``refs`` (2K, D, D, D) are half-set references (class c, half h at 2c + h); each
        particle is scored against the references of the *other* half, so its own noise,
        averaged into its own class, cannot pull it there (self-bias at low SNR).
        """
        k = refs.shape[0] // 2
        bs = max(1, len(engine.batches()[0]))
        n_poses = 1 if engine.deltas is None else len(engine.deltas)
        out = np.zeros((len(halves), k, n_poses))
        block = -1
        for h in (0, 1):  # particles of half h against the K references of half 1 - h
            proj = engine.projector(refs[1 - h :: 2])
            rows = engine.order[halves[engine.order] == h]  # keyed (name-defined) order
            for start in range(0, len(rows), bs):
                block += 1
                if not parallel.owns(block):  # another rank's chunk
                    continue
                chunk = rows[start : start + bs]
                prep = engine.prepare(engine.index[chunk])
                model = model_transforms(proj, prep, engine.deltas)
                if engine.deltas is None:
                    model = model[:, None]
                j = model.shape[1]
                s = ncc_scores(prep, model.flatten(0, 1), band, self._region_split
                               ).reshape(len(chunk), k, j)
                out[chunk] = s.cpu().numpy()
                if engine.progress:
                    engine.progress(len(chunk))
        parallel.all_reduce_sum([out])  # each row was scored by one rank, 0 on the others
        return out

    def _fused(self, engine: EMEngine) -> bool:
        """Whether an iteration is one compact pass (:func:`climb_pass`)."""
        return self.compact and engine.cfg.compact and engine.deltas is None

    def _climber(self, labels: np.ndarray, temp: float,
                 draws: tuple[np.ndarray, np.ndarray]):
        """:func:`~tomohet.methods.shc_scoring.climb_step` of a batch's rows (positions
        into the engine's index)."""
        def climb(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
            return climb_step(scores, labels[rows], temp, (draws[0][rows], draws[1][rows]))

        return climb

    def _draws(self, engine: EMEngine, seed: int, iteration: int
               ) -> tuple[np.ndarray, np.ndarray]:
        k = self.n_classes
        return tuple(keyed_uniform_grid(engine.names, engine.tomo_names, k, seed,
                                        f"shc-{what}/{iteration}")
                     for what in ("order", "accept"))  # type: ignore[return-value]

    def _run(self, engine: EMEngine, halves, band_fn, seed: int
             ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        refs, res = self._initial_references(engine, halves, seed)
        labels = self._keyed_labels(engine, seed, "shc-init-labels")
        history: list[dict[str, Any]] = []
        for it in range(self.n_iter):
            temp = temperature_schedule(it, self.temperature, self.anneal_iters)
            draws = self._draws(engine, seed, it)
            if self._fused(engine):  # score, climb and re-average in one compact pass
                new, bp = climb_pass(engine, refs, band_fn(res), halves,
                                     self._climber(labels, temp, draws), self._region_split)
                changed = float((new != labels).mean())
                refs, res, labels = self._references_from(engine, bp, new, halves)
            else:
                scores = self._score_pass(engine, refs, band_fn(res), halves)
                new = climb_step(scores, labels, temp, draws)
                changed = float((new != labels).mean())
                refs, res, labels = self._references(engine, new, halves)
            history.append({"iteration": it + 1, "temperature": temp,
                            "resolution_A": res, "changed_fraction": changed,
                            "populations": np.bincount(
                                labels, minlength=self.n_classes).tolist()})
            if temp == 0 and changed == 0:
                break
        return labels, history

    # ------------------------------------------------------------------ fit
    def fit(self, particles: ParticleSet) -> SHC:
        self._check_input(particles)
        if particles.n_particles < self.n_classes:
            raise ValueError("shc: fewer particles than classes")
        if self.split not in ("regions", "joint"):
            raise ValueError(f"shc: split must be 'regions' or 'joint', got {self.split!r}")
        device = resolve_device(self.device)
        n, box, px = particles.n_particles, particles.optics.box, particles.optics.pixel_size_A
        cfg = EMConfig(n_classes=self.n_classes, batch_size=self.batch_size,
                       local_search_deg=self.local_search_deg, compact=self.compact,
                       cache_geometry_mb=self.cache_geometry_mb, device=str(device))
        mask = default_mask(box, self.mask_radius_A, px, device)
        per_iter = 1 if self.compact and self.local_search_deg <= 0 else 2  # passes
        total = self.n_runs * (per_iter * self.n_iter + 1) * n + n
        bar = tqdm(total=total, desc=f"shc K={self.n_classes} x{self.n_runs}", unit="ptcl",
                   disable=not self.progress, leave=False)
        engine = EMEngine(particles, cfg, np.arange(n), reference_mask=mask,
                          progress=bar.update)
        from tomohet.data.particles import TiltSeriesParticles

        ndim = 2 if isinstance(particles, TiltSeriesParticles) else 3

        def band(res: float | None) -> torch.Tensor:
            return self._band(box, px, ndim, device, res)

        base = seed_of(self.random_state)
        halves = half_sets(particles.names, particles.tomo_names, base, particles.table)
        self.half_sets_ = halves
        focus = (self.focus_mask if self.focus_mask is None or isinstance(self.focus_mask, str)
                 else load_volume(self.focus_mask))
        self.setup_ = discover_with(engine, self.n_classes, focus, self.init, halves, base)
        self.discovery_, engine = self.setup_.discovery, self.setup_.engine
        self.focus_mask_ = None if self.setup_.focus is None else self.setup_.focus.cpu()
        seeds = [base + 7919 * r for r in range(max(1, self.n_runs))]
        climbed = (climb_regions(self, self.setup_, halves, band, seeds)  # issue 12; None:
                   if uses_regions(self, self.setup_) else None)  # no region -> random
        if climbed is not None:
            stacked, self.history_ = climbed
            held = self.discovery_.focus if self.discovery_ is not None else None
            self.focus_mask_ = held if self.focus_mask_ is None else self.focus_mask_
        else:
            runs, self.history_ = [], []
            for seed in seeds:
                labels, history = self._run(engine, halves, band, seed=seed)
                runs.append(labels)
                self.history_.append(history)
            stacked = np.stack(runs)
        self._finish(engine, align_runs(stacked, self.n_classes), halves)
        bar.close()
        self.pixel_size_A_ = px
        return self

    def _finish(self, engine: EMEngine, runs: np.ndarray, halves: np.ndarray) -> None:
        k = self.n_classes
        votes = np.stack([(runs == c).sum(0) for c in range(k)], axis=1)  # (N, K)
        self.labels_ = votes.argmax(1)
        self.consistency_ = votes.max(1) / runs.shape[0]
        self.consistent_ = self.consistency_ >= self.consistency_threshold
        self.run_labels_ = runs
        # each class's share of the particles (0: empty, e.g. fewer regions than K needs)
        self.priors_ = np.bincount(self.labels_, minlength=k) / len(self.labels_)
        weights = np.eye(k)[self.labels_] * self.consistent_[:, None]
        if weights.sum() == 0:
            weights = np.eye(k)[self.labels_]
        plain = self.setup_.plain  # full maps, also after focused classification
        bp = plain.reconstruct_pass(weights, None, halves)
        self.class_volumes_, self.fsc_, self.resolution_A_ = plain.volumes_from(bp)
        half = plain.last_half_maps
        assert half is not None
        self.half_volumes_ = half.reshape(k, 2, *half.shape[1:])

    # ------------------------------------------------------------------ outputs
    def predict(self, particles: ParticleSet | None = None) -> np.ndarray:
        return self._fitted_output("labels_", particles)

    def predict_proba(self, particles: ParticleSet | None = None) -> np.ndarray:
        """Fraction of runs voting for each class. (N, K)."""
        self.predict(particles)  # the same checks
        k = self.n_classes
        return np.stack([(self.run_labels_ == c).mean(0) for c in range(k)], axis=1)

    def particle_volumes(self, index: np.ndarray) -> torch.Tensor | None:
        return self.class_volumes_[self.labels_[np.asarray(index)]]

    def save(self, out_dir: str | Path, particles: ParticleSet) -> None:
        """consistency.csv, then the shared discrete outputs (tables before maps)."""
        import pandas as pd

        from tomohet.io.atomic import atomic_write_text
        from tomohet.methods.outputs import save_discrete

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.history_flat_ = [h for run in self.history_ for h in run]
        table = pd.DataFrame({"particle": list(particles.names), "class": self.labels_ + 1,
                              "consistency": self.consistency_,
                              "consistent": self.consistent_})
        atomic_write_text(out / "consistency.csv", table.to_csv(index=False))
        save_discrete(self, out, particles)
