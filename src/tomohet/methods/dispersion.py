"""How many times over does the likelihood count a smooth difference? (issue 12)

The Gaussian likelihood of :func:`tomohet.physics.forward.log_likelihoods` treats every
Fourier sample of a particle as independent noise of the power measured per shell. That
holds for tilt images with white detector noise. It does not hold for subtomograms: each
2D measurement is spread over neighbouring 3D Fourier voxels when the tilt series is
back-projected (trilinear gridding), and a box cut from a tomogram mixes neighbours too.
The per-voxel power is still right, but a *smooth* difference between two maps, which
spans many correlated voxels, is then counted as if each carried its own evidence: the
log-likelihood ratio of two classes is too large by the correlation's sum, and so is any
held-out gain. On a held-out-like cell (``benchmarks/README.md``, tenth session) ml3d's
held-out test accepted a region off both components at z 5.6 (87 nats) for that reason
alone; with the noise power scaled by 3.4 it was rejected and ARI went 0.34 -> 0.86.

The factor is measured on the data, not assumed from how they were made:
:func:`estimate_dispersion` draws a few smooth random fields ``delta`` inside the
reference mask and, for every particle, the log-likelihood ratio ``L`` of
``u + delta`` against ``u - delta`` (``u`` the consensus). A random ``delta`` has
nothing to do with the particles, so ``L`` is noise: a calibrated likelihood gives it
variance ``d'^2`` (:func:`tomohet.physics.forward.mahalanobis2`), an over-confident one
``c d'^2``. ``c = sum (L - mean_f L)^2 / sum d'^2`` over particles and fields; the noise
model then stores ``c`` x the residual power (``EMConfig.noise_dispersion``), which
tempers every likelihood, posterior and held-out gain by ``1 / c``.
"""

from __future__ import annotations

import numpy as np
import torch

from tomohet import parallel
from tomohet.physics.forward import (
    NoiseModel,
    log_likelihoods,
    mahalanobis2,
    model_transforms,
)
from tomohet.physics.fourier import ft_to_volume, lowpass_filter, volume_to_ft

__all__ = ["smooth_fields", "estimate_dispersion", "applied_dispersion", "calibrate_noise",
           "MIN_DISPERSION"]

# below this the measured factor is taken for 1 and the likelihood is left as it is: its
# sampling error (300 particles x 4 fields: about 0.04) and what heterogeneity adds to
# the ratios (tilt images of held-out-like cells: 0.96-1.01; subtomograms: 1.3-1.4)
MIN_DISPERSION = 1.2


def smooth_fields(support: torch.Tensor, n_fields: int, resolution_px: float,
                  seed: int, window_px: float | None = None) -> torch.Tensor:
    """``n_fields`` random fields (white noise low-passed at ``resolution_px`` pixels,
    times ``support`` (D, D, D), unit rms), drawn from ``seed``. With ``window_px``, each
    is confined to a Gaussian window of that sd at a random voxel of the support (the
    size of a region that comes and goes: a compact difference is smooth in Fourier
    space and so spans correlated samples). -> (n_fields, D, D, D)."""
    d = support.shape[-1]
    gen = torch.Generator().manual_seed(int(seed))
    sup = support.cpu().float()
    white = torch.randn((n_fields, d, d, d), generator=gen, dtype=torch.float32)
    if window_px is not None:
        inside = torch.nonzero(sup.reshape(-1) > 0.5).reshape(-1)
        pick = inside[torch.randint(len(inside), (n_fields,), generator=gen)]
        c = torch.arange(d, dtype=torch.float32)
        zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")
        for f, i in enumerate(pick.tolist()):
            z0, y0, x0 = i // (d * d), (i // d) % d, i % d
            r2 = (zz - z0) ** 2 + (yy - y0) ** 2 + (xx - x0) ** 2
            white[f] *= torch.exp(-0.5 * r2 / window_px**2)
    lp = lowpass_filter(d, resolution_px, 1.0, 3)
    fields = ft_to_volume(volume_to_ft(white * sup) * lp, d) * sup
    rms = fields.pow(2).mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
    return fields / rms


def estimate_dispersion(engine, consensus: torch.Tensor, noise: NoiseModel,
                        n_fields: int = 4, resolution_px: float = 4.0, seed: int = 0,
                        window_px: float | None = None, max_particles: int = 2000,
                        support: torch.Tensor | None = None) -> float:
    """The likelihood's over-count of smooth differences on ``engine``'s particles (the
    module doc): one pass with ``2 n_fields`` maps ``consensus +- scale x field`` over
    the first ``max_particles`` in the name-keyed order (sampling error ~
    ``sqrt(2 / (n n_fields))``: 1.6% at 2,000); summed over ranks. ``noise`` the
    consensus's noise model (dispersion 1; a scaled one gives the factor relative to
    it). ``support`` (D, D, D): where the fields live (default the reference mask)."""
    if support is None:
        support = engine.reference_mask if engine.reference_mask is not None else \
            torch.ones_like(consensus)
    scale = 0.1 * float(consensus.std()) or 1.0
    delta = smooth_fields(support, n_fields, resolution_px, seed, window_px) * scale
    u = consensus.cpu()[None]
    proj = engine.projector(torch.cat([u + delta, u - delta]))
    ratio = torch.zeros((len(engine.index), n_fields), dtype=torch.float64)
    dist = torch.zeros_like(ratio)
    batches: list[np.ndarray] = []
    used = np.zeros(len(engine.index), dtype=bool)
    for rows in engine.batches():  # a prefix of the keyed order: rows do not matter
        if batches and used.sum() + len(rows) > max_particles:
            break
        batches.append(rows)
        used[rows] = True
    for rows in parallel.shard(batches):
        prep = engine.prepare(engine.index[rows])
        slices = model_transforms(proj, prep)
        ll = log_likelihoods(prep, slices, noise).double()
        ratio[rows] = (ll[:, :n_fields] - ll[:, n_fields:]).cpu()
        dist[rows] = mahalanobis2(prep, slices[:n_fields] - slices[n_fields:],
                                  noise).double().cpu()
    parallel.all_reduce_sum([ratio, dist])
    ratio = ratio[torch.as_tensor(used)]
    centred = ratio - ratio.mean(0, keepdim=True)  # what the consensus's own bias adds
    total = float(dist.sum())
    return float(centred.pow(2).sum()) / total if total > 0 else 1.0


def applied_dispersion(measured: float) -> float:
    """The factor the noise model takes: ``measured`` when above
    :data:`MIN_DISPERSION`, else 1 (independent samples within sampling error)."""
    return float(measured) if np.isfinite(measured) and measured > MIN_DISPERSION else 1.0


def calibrate_noise(engine, consensus: torch.Tensor, noise: NoiseModel, seed: int
                    ) -> NoiseModel:
    """Measure the dispersion on ``engine``'s particles (:func:`estimate_dispersion`) and,
    where :func:`applied_dispersion` keeps it, set it on ``engine.cfg`` (every engine made
    from that config, focused or not, and every noise model it makes inherits it) and on
    ``noise`` (scaled in place). -> ``noise``."""
    import dataclasses

    c = applied_dispersion(estimate_dispersion(engine, consensus, noise, seed=seed))
    if c != 1.0:
        engine.cfg = dataclasses.replace(engine.cfg, noise_dispersion=c)
        noise.scale_dispersion(c)
    return noise
