"""Expectation-maximisation over classes, shared by ml2d, ml3d and occupancy.

One pass over the data (in batches) does the E-step for every particle and accumulates
the M-step sums: posterior-weighted, noise-weighted back-projection into 2K half-set
volumes and the residual noise power. The same code runs on 2D tilt stacks and on
subtomograms (:mod:`tomohet.physics.forward` hides the geometry). Batches are formed in
an order drawn from the particle names, and every per-particle quantity (including the
annealing temperature) depends on that particle only, so neither the star's row order
nor the batch size changes a result beyond float rounding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from tomohet import parallel
from tomohet.data.particles import SubtomogramParticles, TiltSeriesParticles
from tomohet.data.prepare import prepare_batch, prepare_subtomo_batch
from tomohet.methods.em_cache import GeometryCache
from tomohet.methods.em_estep import e_step, e_step_compact, tilt_weights
from tomohet.methods.em_state import EMState, particles_fingerprint
from tomohet.methods.em_steps import batch_order, half_weights, pose_deltas, tempered_posteriors
from tomohet.physics.compact import (
    CompactBatch,
    CompactProjector,
    CompactSums,
    accumulate_noise_compact,
    compact_batch,
    insert_compact,
    project_compact,
)
from tomohet.physics.forward import (
    NoiseModel,
    PreparedBatch,
    model_transforms,
)
from tomohet.physics.fourier import (
    ft_to_volume,
    lowpass_filter,
    radial_shell_index,
    volume_to_ft,
)
from tomohet.physics.fsc import resolution_at
from tomohet.physics.projection import Backprojector, VolumeProjector
from tomohet.physics.reconstruction import (
    backproject,
    gold_standard_maps,
    shrink_class_differences,
)

__all__ = ["EMConfig", "EMState", "EMEngine", "tempered_posteriors", "batch_order",
           "particles_fingerprint"]


@dataclass
class EMConfig:
    n_classes: int
    max_resolution_A: float | None = None
    tilt_group_deg: float = 10.0
    tau_fudge: float = 1.0
    batch_size: int = 32
    pad: int = 2
    use_dose_mask: bool = True
    local_search_deg: float = 0.0
    local_search_steps: int = 1
    per_tilt_weights: bool = False  # nextPYP-style tilt-weighted occupancy
    device: str = "cpu"
    # passes on the kept (masked) pixels or voxels only, one trilinear plan per image or
    # subtomogram for projection and back-projection (tomohet.physics.compact; not with
    # a local pose search); False = dense reference
    compact: bool = True
    # RELION's current_size: an E/M pass leaves out pixels past the shell where the best
    # class's FSC first drops below 0.143, plus this many shells (None: every pixel).
    # The first pass (no FSC yet) uses every pixel. Same ARI with and without on the
    # ladder cells and presets in benchmarks/README.md ("Speed of the EM core").
    current_size_margin: int | None = 4
    # MB of compacted batches (pixels, data, trilinear plan) kept across passes
    # (tomohet.methods.em_cache; compact path only); 0 = rebuild every pass
    cache_geometry_mb: float = 0.0
    difference_wiener: bool = True  # focused: class differences filtered by their FSC
    noise_dispersion: float = 1.0  # noise power x this (tomohet.methods.dispersion)


class EMEngine:
    """Runs E/M passes over a particle set with a fixed configuration."""

    def __init__(
        self,
        particles: TiltSeriesParticles | SubtomogramParticles,
        config: EMConfig,
        index: np.ndarray,
        reference_mask: torch.Tensor | None = None,
        focus_mask: torch.Tensor | None = None,
        consensus: torch.Tensor | None = None,
        progress: Callable[[int], None] | None = None,
        subtract_all: bool = False,
    ) -> None:
        self.particles = particles
        self.cfg = config
        self.index = index  # particles that take part
        self.device = torch.device(config.device)
        self.box = particles.optics.box
        self.px = particles.optics.pixel_size_A
        self.is_tilt = isinstance(particles, TiltSeriesParticles)
        self.reference_mask = reference_mask
        self.focus_mask = focus_mask
        self.outside: VolumeProjector | None = None
        self._outside_table: CompactProjector | None = None  # its table, made once
        if focus_mask is not None:
            if consensus is None:
                raise ValueError("focused classification needs a consensus map")
            # subtract_all: the whole consensus, so that class maps are differences from
            # it (their Wiener filter shrinks towards the consensus, not towards zero)
            kept = consensus if subtract_all else consensus * (1 - focus_mask)
            self.outside = VolumeProjector(kept.to(self.device), pad=config.pad)
        self.progress = progress
        self.deltas = (pose_deltas(config.local_search_deg, config.local_search_steps,
                                   self.device) if config.local_search_deg > 0 else None)
        # seconds per stage, for benchmarks/bench_ml.py
        self.timings: dict[str, float] = {"read_prepare": 0.0, "plan": 0.0, "projection": 0.0,
                                          "likelihood": 0.0, "backprojection": 0.0}
        # identities of the particles taking part, for keyed per-particle draws
        self.names = [particles.names[i] for i in index]
        self.tomo_names = [particles.tomo_names[i] for i in index]
        self.order = batch_order(self.names, self.tomo_names)  # positions into ``index``
        self.fingerprint = particles_fingerprint(self.names, self.tomo_names)
        # half maps (2K, D, D, D) of the last :meth:`volumes_from` (class c half h at 2c + h)
        self.last_half_maps: torch.Tensor | None = None
        self._pass_shell: int | None = None  # current_size of the running pass
        self._shells = radial_shell_index(self.box, 2 if self.is_tilt else 3,
                                          device=self.device)
        # compacted batches kept across passes (EMConfig.cache_geometry_mb)
        self.geometry = (GeometryCache(config.cache_geometry_mb)
                         if config.cache_geometry_mb > 0 and self._compact() else None)

    def current_shell(self, fsc: list[list[float]]) -> int | None:
        """Highest shell an E/M pass uses with ``current_size_margin`` (None: all): the
        first shell where the best class's FSC drops below 0.143, plus the margin."""
        margin = self.cfg.current_size_margin
        if margin is None or not fsc:
            return None
        curves = np.nan_to_num(np.asarray(fsc, dtype=float))
        below = curves[:, 1:] < 0.143
        first = np.where(below.any(1), below.argmax(1) + 1, curves.shape[1])
        shell = int(first.max()) + int(margin)
        return None if shell >= self.box // 2 + 1 else shell

    def _tick(self, key: str, t0: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.timings[key] += now - t0
        return now

    # ------------------------------------------------------------------ data
    def new_noise(self) -> NoiseModel:
        groups = 1 if not self.is_tilt else int(90 // self.cfg.tilt_group_deg) + 2
        return NoiseModel(self.box, groups, self.device, 2 if self.is_tilt else 3,
                          self.cfg.noise_dispersion)

    def prepare(self, idx: np.ndarray, subtract: bool = True) -> PreparedBatch:
        """The prepared batch of particles ``idx``; focused, the signal outside the focus
        mask subtracted (``subtract``; the compact path does it at its kept pixels)."""
        if isinstance(self.particles, TiltSeriesParticles):
            prep = prepare_batch(
                self.particles.batch(idx, self.device), self.particles.optics,
                self.cfg.max_resolution_A, self.cfg.tilt_group_deg, self.cfg.use_dose_mask)
        else:
            prep = prepare_subtomo_batch(self.particles.batch(idx, self.device),
                                         self.particles.optics, self.cfg.max_resolution_A)
        if self._pass_shell is not None:
            prep.mask &= self._shells <= self._pass_shell
        if self.outside is not None and subtract:  # signal outside the focus mask
            prep.data = prep.data - model_transforms(self.outside, prep)[0] * prep.transfer
        return prep

    def batches(self) -> list[np.ndarray]:
        """Positions into ``index`` per batch, in the name-defined (keyed) order."""
        bs = self.cfg.batch_size
        if self.deltas is not None:
            bs = max(1, bs // len(self.deltas))
        return [self.order[i : i + bs] for i in range(0, len(self.order), bs)]

    def projector(self, volumes: torch.Tensor) -> VolumeProjector:
        v = volumes.to(self.device)
        if self.focus_mask is not None:
            v = v * self.focus_mask.to(self.device)
        elif self.reference_mask is not None:
            v = v * self.reference_mask.to(self.device)
        return VolumeProjector(v, pad=self.cfg.pad)

    # ------------------------------------------------------------------ passes
    def noise_pass(self, volumes: torch.Tensor, labels: np.ndarray) -> NoiseModel:
        """Noise power from residuals against the given class of each particle."""
        noise = self.new_noise()
        proj = self.projector(volumes)
        for rows in parallel.shard(self.batches()):  # this rank's batches
            prep = self.prepare(self.index[rows])
            model = model_transforms(proj, prep)
            lab = torch.as_tensor(labels[rows], device=self.device)
            pick = model[lab, torch.arange(len(rows), device=self.device)]
            resid = prep.data - prep.transfer * pick
            noise.accumulate(resid.real**2 + resid.imag**2, prep)
        self._reduce_sums(noise, None, None)
        noise.update()
        return noise

    def reconstruct_pass(self, weights: np.ndarray, noise: NoiseModel | None,
                         halves: np.ndarray) -> Backprojector:
        """Back-project with fixed class weights (N_index, K) into 2K half-set volumes."""
        k = weights.shape[1]
        w_all = torch.as_tensor(weights, dtype=torch.float32, device=self.device)
        h_all = torch.as_tensor(halves, device=self.device)
        bp, sums = self._accumulators(2 * k)
        for rows in parallel.shard(self.batches()):  # this rank's batches
            r = torch.as_tensor(rows, device=self.device)
            vw = half_weights(w_all[r], h_all[r])
            if sums is not None:
                cb, _ = self._compact_for(rows, self._n_groups(noise), sums.padded)
                insert_compact(sums, cb, vw, noise)
            else:
                assert bp is not None
                backproject(bp, self.prepare(self.index[rows]), vw, noise)
            if self.progress:
                self.progress(len(rows))
        self._reduce_sums(None, sums, bp)
        if sums is not None:
            return sums.backprojector()
        assert bp is not None
        return bp

    @staticmethod
    def _reduce_sums(noise: NoiseModel | None, sums: CompactSums | None,
                     bp: Backprojector | None, *extra: torch.Tensor) -> None:
        """Sum a pass's accumulators over ranks (:mod:`tomohet.parallel`; no-op on one)."""
        if parallel.world() == 1:
            return
        parts: list[torch.Tensor] = list(extra)
        if noise is not None:
            parts += [noise._sum, noise._count]
        if sums is not None:
            parts += [sums.re, sums.im, sums.weight]
        if bp is not None:
            parts += [bp.data, bp.weight]
        parallel.all_reduce_sum(parts)

    def _compact(self) -> bool:
        """Whether passes take the compacted path (tilt images or subtomograms, no local
        pose search)."""
        return self.cfg.compact and self.deltas is None

    def _accumulators(self, n_volumes: int
                      ) -> tuple[Backprojector | None, CompactSums | None]:
        """The M-step sums a pass fills: compact sums on the compact path, else a dense
        :class:`~tomohet.physics.projection.Backprojector` (only the one that is used is
        allocated; each is ``n_volumes`` padded grids)."""
        if self._compact():
            return None, CompactSums(self.box, n_volumes, self.cfg.pad, self.device)
        return Backprojector(self.box, n_volumes, self.cfg.pad, self.device), None

    def _n_groups(self, noise: NoiseModel | None) -> int:
        return (noise or self.new_noise()).sigma2.shape[0]

    def em_pass(self, state: EMState, halves: np.ndarray, max_top: float | None = None
                ) -> tuple[Backprojector, NoiseModel, np.ndarray, float]:
        """E-step for every particle and M-step sums. Returns (bp, noise, posteriors, ll).

        ``max_top``: deterministic annealing cap on each particle's largest posterior (see
        :func:`tempered_posteriors`); None = true posteriors."""
        self._pass_shell = self.current_shell(state.fsc)
        try:
            return self._em_pass(state, halves, max_top)
        finally:
            self._pass_shell = None

    def _em_pass(self, state: EMState, halves: np.ndarray, max_top: float | None
                 ) -> tuple[Backprojector, NoiseModel, np.ndarray, float]:
        k = self.cfg.n_classes
        noise = self.new_noise()
        noise.sigma2 = state.sigma2.to(self.device)
        new_noise = self.new_noise()
        # shells past this pass's current size get no samples: they keep the last
        # estimate (a fresh model's placeholder 1 blew up the evidence; issue 12)
        new_noise.initialise_from(noise)
        proj = self.projector(state.volumes)
        bp, sums = self._accumulators(2 * k)
        table = CompactProjector(proj) if sums is not None else None
        log_prior = torch.log(state.priors.to(self.device).clamp_min(1e-12))
        post_all = torch.zeros((len(self.index), k), dtype=torch.float64, device=self.device)
        h_all = torch.as_tensor(halves, device=self.device)
        total_ll = torch.zeros((), dtype=torch.float64, device=self.device)
        for rows in parallel.shard(self.batches()):  # this rank's batches
            r = torch.as_tensor(rows, device=self.device)
            if sums is not None:
                cb, tilt_w = self._compact_for(rows, noise.sigma2.shape[0], sums.padded)
                assert table is not None
                post, ll_tot, resid_c = e_step_compact(table, cb, tilt_w, noise,
                                                       log_prior, max_top, self._tick)
                t0 = time.perf_counter()
                post_all[r] = post.double()
                total_ll += ll_tot.double()
                accumulate_noise_compact(new_noise, cb, resid_c)
                insert_compact(sums, cb, half_weights(post, h_all[r]), noise)
                self._tick("backprojection", t0)
                if self.progress:
                    self.progress(len(rows))
                continue
            t0 = time.perf_counter()
            prep = self.prepare(self.index[rows])
            self._tick("read_prepare", t0)
            post, ll_tot, best_rot, resid = e_step(
                proj, prep, noise, log_prior, self.deltas, self.cfg.n_classes,
                self.cfg.per_tilt_weights and self.is_tilt, max_top, self._tick)
            t0 = time.perf_counter()
            post_all[r] = post.double()
            total_ll += ll_tot.double()
            new_noise.accumulate(resid, prep)
            vw = half_weights(post, h_all[r])
            assert bp is not None
            if best_rot is None:
                backproject(bp, prep, vw, noise)
            else:
                for c in range(k):
                    sel = torch.zeros_like(vw)
                    sel[2 * c : 2 * c + 2] = vw[2 * c : 2 * c + 2]
                    backproject(bp, prep, sel, noise, rotation=best_rot[c])
            self._tick("backprojection", t0)
            if self.progress:
                self.progress(len(rows))
        # the E-step sums of every rank: posteriors (rows of other ranks are 0 here),
        # log evidence, noise power and back-projections
        self._reduce_sums(new_noise, sums, bp, post_all, total_ll)
        new_noise.update()
        if sums is not None:
            bp = sums.backprojector()
        assert bp is not None
        return bp, new_noise, post_all.cpu().numpy(), float(total_ll)

    def _compact_for(self, rows: np.ndarray, n_groups: int, padded: int
                     ) -> tuple[CompactBatch, torch.Tensor | None]:
        """The compacted batch of ``rows`` under this pass's shell limit, and its tilt
        weights with ``per_tilt_weights``: from the geometry cache when it holds it."""
        def build() -> tuple[CompactBatch, torch.Tensor | None]:
            t0 = time.perf_counter()
            prep = self.prepare(self.index[rows], subtract=False)
            t0 = self._tick("read_prepare", t0)
            tilt_w = (tilt_weights(prep) if self.cfg.per_tilt_weights and self.is_tilt
                      else None)
            cb = compact_batch(prep, padded, n_groups)
            if self.outside is not None:  # subtracted at the kept pixels only
                if self._outside_table is None:
                    self._outside_table = CompactProjector(self.outside)
                cb.data = cb.data - project_compact(self._outside_table, cb)[0] * cb.transfer
            self._tick("plan", t0)
            return cb, tilt_w

        if self.geometry is None:
            return build()
        shell, self._pass_shell = self._pass_shell, None  # cached at the full mask
        try:
            t0 = time.perf_counter()
            out = self.geometry.get(int(rows[0]), build, self._shells, shell)
            self._tick("plan", t0)
            return out
        finally:
            self._pass_shell = shell

    # ------------------------------------------------------------------ M-step
    def volumes_from(self, bp: Backprojector) -> tuple[torch.Tensor, list[list[float]],
                                                        list[float]]:
        """Class volumes, per-class half-map FSC and resolution from 2K half-set sums
        (:func:`tomohet.physics.reconstruction.gold_standard_maps`; an empty class gives a
        zero map and a zero FSC). The half maps are kept in ``last_half_maps``. Focused
        with ``difference_wiener``, the classes' differences are Wiener-filtered by
        their own FSC (``shrink_class_differences``)."""
        gs = gold_standard_maps(bp, self.cfg.tau_fudge, fsc_mask=self.focus_mask)
        self.last_half_maps = gs.half_maps.cpu()
        curves = gs.fsc.cpu()
        maps = gs.maps
        k = maps.shape[0]
        if self.focus_mask is not None and self.cfg.difference_wiener and k > 1:
            weight = bp.weight.reshape(k, -1).sum(1)  # both halves of each class
            maps, _ = shrink_class_differences(maps, gs.half_maps, weight,
                                               self.cfg.tau_fudge, self.focus_mask)
        vols = torch.stack([self._limit(v) for v in maps])
        res = [resolution_at(c, self.px, 0.143) for c in curves]
        return vols.cpu(), curves.tolist(), res

    def _limit(self, vol: torch.Tensor) -> torch.Tensor:
        """Low-pass a class volume at the resolution limit used for classification."""
        if self.cfg.max_resolution_A is None:
            return vol
        lp = lowpass_filter(self.box, self.cfg.max_resolution_A, self.px, 3, device=vol.device)
        return ft_to_volume(volume_to_ft(vol) * lp, self.box)
