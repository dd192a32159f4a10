"""Noise power per Fourier voxel of subtomograms, measured on the data (issue 12).

The likelihood of :func:`tomohet.physics.forward.log_likelihoods` takes the noise power
per resolution shell times a per-voxel factor (``PreparedBatch.premult_power``): ``sum
CTF^2`` for RELION 4 pseudo-subtomograms, 1 for reconstructed subtomograms with a 3D CTF
(RELION 3.0/3.1, STOPGAP, Dynamo). Neither is what the data hold. A subtomogram made by
back-projection has, at each voxel, the noise of the tilt images that reach it, and how
many do depends on the voxel's direction: near the tilt axis every tilt passes, off it
one or two. Measured on a held-out-like cell (``benchmarks/README.md``, eleventh session)
with the true maps, the residual power per voxel varies within a shell by 3-6x (p90/p10)
for a density-normalised reconstruction and ~2x for pseudo-subtomograms after their
``sum CTF^2``; the Bayes classifier with the true maps loses ARI 0.90 -> 0.83 to it.

The pattern is fixed in the tomogram frame, so it is estimated per tomogram from the
residuals against the consensus (the heterogeneity in them is a small part of the
power): mean ``|X - H V|^2 / premult_power`` per voxel over the tomogram's particles,
shrunk towards the same over all tomograms (:data:`PRIOR_PARTICLES` pseudo-particles;
tilt schemes are usually shared) and that towards its shell mean, then divided by the
shell mean. It multiplies ``premult_power`` from then on
(:class:`tomohet.data.particles.NoiseProfile`), so the shell's noise power keeps its
meaning and every likelihood, posterior, reconstruction weight and held-out gain takes
the per-voxel noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from tomohet import parallel
from tomohet.data.particles import NoiseProfile, SubtomogramParticles
from tomohet.methods.em_cache import GeometryCache
from tomohet.physics.forward import NoiseModel, model_transforms
from tomohet.physics.fourier import radial_shell_index

__all__ = ["estimate_noise_profile", "profile_spread", "with_noise_profile",
           "PRIOR_PARTICLES", "MIN_SPREAD", "MAX_PROFILE_VOXELS"]

# pseudo-particles of the shrinkage: a tomogram's voxel with n particles is weighted
# n / (n + PRIOR) against the pooled estimate, the pooled one likewise against its shell
PRIOR_PARTICLES = 20.0
# at most this many voxels over all per-tomogram profiles (two float64 sums of as many
# while estimating): past it, one profile pooled over the tomograms (tilt schemes are
# usually shared), e.g. box 64 keeps 124 tomograms apart, box 128 15
MAX_PROFILE_VOXELS = 2**24
# below this excess spread within shells (CV beyond what sampling gives) the profile is
# taken for white and not applied
MIN_SPREAD = 0.1


def _shell_mean(s: torch.Tensor, c: torch.Tensor, shell: torch.Tensor, n: int
                ) -> torch.Tensor:
    """Per-voxel shell mean of ``s / c`` (sums over a shell's voxels) -> shape of s."""
    flat = shell.reshape(-1).clamp_max(n - 1)
    lead = s.shape[:-3]
    ss = torch.zeros((*lead, n), dtype=s.dtype).index_add_(-1, flat, s.reshape(*lead, -1))
    cc = torch.zeros((*lead, n), dtype=s.dtype).index_add_(-1, flat, c.reshape(*lead, -1))
    mean = ss / cc.clamp_min(1e-12)
    return mean[..., flat].reshape(s.shape)


def profile_spread(power: torch.Tensor, count: torch.Tensor) -> float:
    """How far from white: the rms of a relative per-voxel power (shell mean 1) about 1,
    over the measured voxels, minus what sampling alone gives (``1 / sqrt(count)``)."""
    keep = count > 0
    if not keep.any():
        return 0.0
    cv = float((power[keep] - 1.0).pow(2).mean().sqrt())
    sampling = float((1.0 / count[keep].sqrt()).mean())
    return max(0.0, cv - sampling)


def estimate_noise_profile(engine, consensus: torch.Tensor
                           ) -> tuple[NoiseProfile, dict[str, float]]:
    """Per-tomogram noise profile of ``engine``'s subtomograms (the module doc), from the
    residuals against ``consensus`` (D, D, D) over every particle of ``engine.index``;
    summed over ranks. -> (profile, {"spread": excess CV within shells, "tomograms": G})."""
    parts = engine.particles
    names = [parts.tomo_names[i] for i in engine.index]
    tomos = sorted(set(names))
    d = parts.optics.box
    if len(tomos) * d * d * (d // 2 + 1) > MAX_PROFILE_VOXELS:
        tomos, names = ["*"], ["*"] * len(names)
    row = {t: g for g, t in enumerate(tomos)}
    group = np.array([row[t] for t in names])
    shape = (len(tomos), d, d, d // 2 + 1)
    s = torch.zeros(shape, dtype=torch.float64)
    c = torch.zeros(shape, dtype=torch.float64)
    proj = engine.projector(consensus[None])
    for rows in parallel.shard(engine.batches()):
        prep = engine.prepare(engine.index[rows])
        resid = prep.data - prep.transfer * model_transforms(proj, prep)[0]
        power = (resid.real**2 + resid.imag**2) / prep.premult_power.clamp_min(1e-6)
        m = prep.mask.double().cpu()
        g = torch.as_tensor(group[rows])
        s.index_add_(0, g, power.double().cpu() * m)
        c.index_add_(0, g, m)
    parallel.all_reduce_sum([s, c])
    shell = radial_shell_index(d, 3)
    n = int(shell.max()) + 1
    prior = PRIOR_PARTICLES
    pooled_s, pooled_c = s.sum(0), c.sum(0)
    pooled_shell = _shell_mean(pooled_s, pooled_c, shell, n)
    pooled = (pooled_s + prior * pooled_shell) / (pooled_c + prior)
    per = (s + prior * pooled[None]) / (c + prior)
    power = per / _shell_mean(per * c.clamp_min(1e-12), c, shell, n).clamp_min(1e-30)
    power = torch.where(c > 0, power, torch.ones_like(power))
    rel = pooled / _shell_mean(pooled * pooled_c, pooled_c, shell, n).clamp_min(1e-30)
    spread = profile_spread(rel, pooled_c)
    return (NoiseProfile(tomograms=tomos, power=power.float()),
            {"spread": round(spread, 3), "tomograms": len(tomos)})


def with_noise_profile(engine, consensus: torch.Tensor, noise: NoiseModel
                       ) -> tuple[NoiseModel, dict[str, object] | None]:
    """Estimate the profile of a subtomogram engine's data and, where it is not white
    (spread above :data:`MIN_SPREAD`), give ``engine`` a copy of its particles that
    carries it (every engine made from ``engine.particles`` later takes it) and measure
    the consensus's noise again under it. -> (noise model, the estimate's summary with
    ``applied``; None for tilt images)."""
    if not isinstance(engine.particles, SubtomogramParticles) or \
            engine.particles.noise_profile is not None:
        return noise, None
    profile, info = estimate_noise_profile(engine, consensus)
    applied = info["spread"] > MIN_SPREAD
    if applied:
        engine.particles = dataclasses.replace(engine.particles, noise_profile=profile)
        if getattr(engine, "geometry", None) is not None:  # cached batches: old noise scale
            engine.geometry = GeometryCache(engine.cfg.cache_geometry_mb)
        noise = engine.noise_pass(consensus[None], np.zeros(len(engine.index), dtype=np.int64))
    return noise, {**info, "applied": bool(applied)}
