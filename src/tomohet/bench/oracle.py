"""The oracle ceiling: the Bayes classifier that knows the true volumes.

For simulated data the best any method can do is the posterior over the true states
under the exact forward model: central slices of the true volumes
(:class:`~tomohet.physics.projection.VolumeProjector`), the CTF/dose/shift transfer of
:func:`~tomohet.data.prepare.prepare_batch`, a noise model estimated in one pass from
residuals against the true model, and population priors from the truth. Continuous truth
is discretised into a grid of true volumes along the coordinate (per state); the
posterior-mean coordinate is the oracle latent. Method scores are reported as fractions
of the oracle's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from tomohet.bench.datasets import BenchDataset, ParticleSet
from tomohet.data.particles import TiltSeriesParticles
from tomohet.data.prepare import prepare_batch, prepare_subtomo_batch
from tomohet.methods.clustering import kmeans
from tomohet.physics.forward import NoiseModel, PreparedBatch, log_likelihoods, model_transforms
from tomohet.physics.projection import VolumeProjector

__all__ = ["OracleResult", "oracle_posteriors", "oracle_grid", "run_oracle"]


@dataclass
class OracleResult:
    """Oracle output for N particles over a grid of G true volumes.

    posteriors (N, G); grid_states (G,); grid_coords (G, C) or None; labels (N,) MAP
    state; state_posteriors (N, K); coords (N, C) posterior-mean coordinate or None;
    map_index (N,) MAP grid point (its volume is the oracle's particle volume).
    """

    posteriors: np.ndarray
    grid_states: np.ndarray
    grid_coords: np.ndarray | None
    labels: np.ndarray
    state_posteriors: np.ndarray
    coords: np.ndarray | None
    map_index: np.ndarray
    wall_s: float

    def latent(self) -> np.ndarray:
        """Oracle latent: (N, C) posterior-mean coordinate (continuous), (N, K) state
        posteriors (discrete), or both as a :func:`~tomohet.metrics.truth_embedding`
        of MAP state and coordinate (mixed)."""
        if self.coords is None:
            return self.state_posteriors
        if self.state_posteriors.shape[1] > 1:
            from tomohet.metrics import truth_embedding

            return truth_embedding(self.labels, self.coords)
        return self.coords


def _prepare(particles: ParticleSet, idx: np.ndarray, device: torch.device,
             max_resolution_A: float | None, group_width_deg: float) -> PreparedBatch:
    if isinstance(particles, TiltSeriesParticles):
        return prepare_batch(particles.batch(idx, device), particles.optics, max_resolution_A,
                             group_width_deg)
    return prepare_subtomo_batch(particles.batch(idx, device), particles.optics,
                                 max_resolution_A)


def _batch_size(particles: ParticleSet, n_volumes: int, memory_MB: float) -> int:
    """Particles per batch so that the (G, B, T, D, Dh) model stack and its temporaries
    (about 5 complex copies) fit in ``memory_MB``."""
    d = particles.optics.box
    depth = particles.n_tilts if isinstance(particles, TiltSeriesParticles) else d
    per_particle = n_volumes * depth * d * (d // 2 + 1) * 8 * 5
    return int(np.clip(memory_MB * 2**20 // max(per_particle, 1), 1, 256))


def _chunks(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(s, min(s + size, n)) for s in range(0, n, size)]


def oracle_posteriors(
    particles: ParticleSet,
    volumes: torch.Tensor,
    true_index: np.ndarray,
    priors: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    max_resolution_A: float | None = None,
    group_width_deg: float = 10.0,
    memory_MB: float = 256.0,
    projector_MB: float = 1024.0,
    pad: int = 2,
) -> np.ndarray:
    """Posterior over G true volumes for every particle under the exact forward model.

    volumes (G, D, D, D); true_index (N,) the volume each particle was made from (for the
    noise estimate); priors (G,) (default uniform). Streams over particles in batches
    sized for ``memory_MB`` and over volume groups whose padded transforms fit in
    ``projector_MB`` (one group: two passes over the data). -> (N, G) posteriors.
    """
    dev = torch.device(device)
    g, n = volumes.shape[0], particles.n_particles
    true_index = np.asarray(true_index, dtype=np.int64)
    if true_index.shape != (n,) or true_index.min() < 0 or true_index.max() >= g:
        raise ValueError(f"true_index must be (N,) = ({n},) with values in [0, {g})")
    pri = np.full(g, 1.0 / g) if priors is None else np.asarray(priors, float)
    log_prior = np.log(np.clip(pri / pri.sum(), 1e-12, None))
    per_volume_MB = 16 * (pad * volumes.shape[-1]) ** 3 / 2**20  # grid + FFT temporaries
    groups = _chunks(g, max(1, int(projector_MB // per_volume_MB)))
    cached = VolumeProjector(volumes.float().to(dev), pad) if len(groups) == 1 else None

    def projector(vi: np.ndarray) -> VolumeProjector:
        return cached or VolumeProjector(volumes[vi].float().to(dev), pad)

    is_tilt = isinstance(particles, TiltSeriesParticles)
    noise = NoiseModel(particles.optics.box, int(90 // group_width_deg) + 2 if is_tilt else 1,
                       dev, ndim=2 if is_tilt else 3)
    bs = _batch_size(particles, len(groups[0]), memory_MB)
    ll = np.empty((n, g))
    with torch.no_grad():
        for vi in groups:  # noise power from residuals against each particle's true model
            proj = projector(vi)
            members = np.nonzero((true_index >= vi[0]) & (true_index <= vi[-1]))[0]
            for pos in _chunks(len(members), bs):
                idx = members[pos]
                prep = _prepare(particles, idx, dev, max_resolution_A, group_width_deg)
                pick = model_transforms(proj, prep)[
                    torch.as_tensor(true_index[idx] - vi[0], device=dev),
                    torch.arange(len(idx), device=dev)]
                resid = prep.data - prep.transfer * pick
                noise.accumulate(resid.real**2 + resid.imag**2, prep)
        noise.update()
        for vi in groups:
            proj = projector(vi)
            for idx in _chunks(n, bs):
                prep = _prepare(particles, idx, dev, max_resolution_A, group_width_deg)
                ll[idx[:, None], vi[None]] = log_likelihoods(
                    prep, model_transforms(proj, prep), noise).double().cpu().numpy()
    ll += log_prior
    ll -= ll.max(1, keepdims=True)
    post = np.exp(ll)
    return post / post.sum(1, keepdims=True)


def oracle_grid(ds: BenchDataset, n_grid: int = 12, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Grid of true (state, coordinate) points and each particle's nearest grid point.

    Discrete data: one point per state. With coordinates: per state up to ``n_grid``
    k-means centres (seeded) of the true coordinates. -> grid_states (G,), grid_coords
    (G, C) or None, nearest (N,).
    """
    states, coords = ds.states, ds.volume_coords
    if coords is None:
        grid_states = np.unique(states)
        return grid_states, None, np.searchsorted(grid_states, states)
    gs: list[np.ndarray] = []
    gc: list[np.ndarray] = []
    nearest = np.empty(len(states), dtype=np.int64)
    for s in np.unique(states):
        sel = np.nonzero(states == s)[0]
        pts = np.unique(coords[sel], axis=0)
        if len(pts) > n_grid:
            pts = kmeans(coords[sel], n_grid, seed, n_init=3).centres
        pts = pts[np.lexsort(pts.T[::-1])]
        d = np.linalg.norm(coords[sel][:, None, :] - pts[None], axis=-1)
        nearest[sel] = len(gs) + d.argmin(1)
        gs.extend([s] * len(pts))
        gc.extend(pts)
    return np.asarray(gs), np.asarray(gc), nearest


def run_oracle(ds: BenchDataset, n_grid: int = 12, seed: int = 0,
               device: str | torch.device = "cpu", memory_MB: float = 256.0,
               max_resolution_A: float | None = None, projector_MB: float = 1024.0
               ) -> OracleResult:
    """The oracle on a benchmark data set (see module doc). -> :class:`OracleResult`."""
    if not ds.has_volumes:
        raise ValueError(f"{ds.name}: the oracle needs the true volumes")
    t0 = time.perf_counter()
    grid_states, grid_coords, nearest = oracle_grid(ds, n_grid, seed)
    volumes = ds.volumes_for(grid_states, grid_coords)
    priors = np.bincount(nearest, minlength=len(grid_states)) / len(nearest)
    post = oracle_posteriors(ds.particles, volumes, nearest, priors, device, max_resolution_A,
                             memory_MB=memory_MB, projector_MB=projector_MB)
    k = int(grid_states.max()) + 1
    state_post = np.zeros((len(post), k))
    np.add.at(state_post.T, grid_states, post.T)
    labels = state_post.argmax(1)
    coords = None
    if grid_coords is not None:  # posterior-mean coordinate within the MAP state
        w = post * (grid_states[None, :] == labels[:, None])
        coords = (w @ grid_coords) / w.sum(1, keepdims=True).clip(1e-300)
    return OracleResult(
        posteriors=post, grid_states=grid_states, grid_coords=grid_coords, labels=labels,
        state_posteriors=state_post, coords=coords, map_index=post.argmax(1),
        wall_s=time.perf_counter() - t0,
    )
